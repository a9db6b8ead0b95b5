"""Subcommands of the comfyfarm command line, one module each."""
