"""Producers: the Python API and CLI that enqueue jobs and follow them."""
