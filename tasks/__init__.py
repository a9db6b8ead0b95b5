"""The contract shared by producers and workers: Celery app, task names, payload models."""
