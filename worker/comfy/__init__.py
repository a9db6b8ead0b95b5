"""The ComfyUI client: HTTP routes, WebSocket events, completion tracking, outputs. No Celery, no storage."""
