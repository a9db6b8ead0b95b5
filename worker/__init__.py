"""A worker bound to one ComfyUI instance (one GPU): runner, storage, the ComfyUI client."""
