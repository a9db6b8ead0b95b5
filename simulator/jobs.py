"""The newer ``GET /api/jobs[/{id}]`` view of prompts (ComfyUI ``comfy_execution/jobs.py``).

Status: pending (queued), in_progress (running), completed, failed, or cancelled (interrupted).
Keys whose value would be None are left out, as ComfyUI's ``prune_dict`` does.
"""

from __future__ import annotations

from typing import Any

from comfyfarm.simulator.prompt_queue import PromptQueue, QueueItem


def _pruned(job: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in job.items() if value is not None}


def _queued(item: QueueItem, status: str) -> dict[str, Any]:
    job = _pruned(
        {
            "id": item.prompt_id,
            "status": status,
            "priority": item.number,
            "create_time": item.extra_data.get("create_time"),
            "outputs_count": 0,
            "previewable_outputs_count": 0,
        }
    )
    job["workflow"] = {"prompt": item.prompt, "extra_data": item.extra_data}
    return job


def _output_items(outputs: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    items: list[tuple[str, str, dict[str, Any]]] = []
    for node_id, node_outputs in outputs.items():
        for media_type, values in node_outputs.items():
            if media_type == "animated" or not isinstance(values, list):
                continue
            items.extend(
                (node_id, media_type, value) for value in values if isinstance(value, dict)
            )
    return items


def _from_history(prompt_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    number, _, prompt, extra_data, _ = entry["prompt"]
    status_info = entry.get("status") or {}
    start = end = error = None
    interrupted = False
    for event, data in status_info.get("messages", []):
        if event == "execution_start":
            start = data.get("timestamp")
        elif event in ("execution_success", "execution_error", "execution_interrupted"):
            end = data.get("timestamp")
            error = data if event == "execution_error" else error
            interrupted = interrupted or event == "execution_interrupted"
    if status_info.get("status_str") == "error":
        status = "cancelled" if interrupted else "failed"
    else:
        status = "completed"
    items = _output_items(entry.get("outputs", {}))
    previewable = [
        (node_id, kind, item)
        for node_id, kind, item in items
        if kind in ("images", "video", "audio")
    ]
    preview = None
    if previewable:
        node_id, kind, item = next(
            (p for p in previewable if p[2].get("type") == "output"), previewable[0]
        )
        preview = {**item, "nodeId": node_id, "mediaType": kind}
    job = _pruned(
        {
            "id": prompt_id,
            "status": status,
            "priority": number,
            "create_time": extra_data.get("create_time"),
            "execution_start_time": start,
            "execution_end_time": end,
            "execution_error": error,
            "outputs_count": len(items),
            "previewable_outputs_count": len(previewable),
            "preview_output": preview,
        }
    )
    job["outputs"] = entry.get("outputs", {})
    job["execution_status"] = status_info
    job["workflow"] = {"prompt": prompt, "extra_data": extra_data}
    return job


def get_job(prompt_id: str, queue: PromptQueue) -> dict[str, Any] | None:
    if prompt_id in queue.history:
        return _from_history(prompt_id, queue.history[prompt_id])
    for item in queue.running_items():
        if item.prompt_id == prompt_id:
            return _queued(item, "in_progress")
    for item in queue.pending_items():
        if item.prompt_id == prompt_id:
            return _queued(item, "pending")
    return None


JOB_STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")


def list_jobs(
    queue: PromptQueue,
    *,
    statuses: tuple[str, ...] = (),
    limit: int | None = None,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Every job (running, pending, finished), newest first, filtered by status; and the total.

    List entries leave out ``outputs``, ``execution_status`` and ``workflow`` (ComfyUI keeps
    those for the single-job view).
    """
    jobs = [_queued(item, "in_progress") for item in queue.running_items()]
    jobs += [_queued(item, "pending") for item in queue.pending_items()]
    jobs += [_from_history(pid, entry) for pid, entry in queue.history.items()]
    jobs.reverse()  # history is oldest first; the list is newest first
    jobs.sort(key=lambda job: job.get("create_time") or 0, reverse=True)
    if statuses:
        jobs = [job for job in jobs if job["status"] in statuses]
    total = len(jobs)
    page = jobs[offset : offset + limit if limit is not None else None]
    heavy = ("outputs", "execution_status", "workflow")
    return [{k: v for k, v in job.items() if k not in heavy} for job in page], total
