"""Workflows: load (API or UI format), convert, parameterise, sweep and validate."""
