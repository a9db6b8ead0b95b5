"""A ComfyUI-compatible server that stands in for a GPU box. Imports nothing of comfyfarm."""
