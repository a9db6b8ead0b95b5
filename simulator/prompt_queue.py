"""The prompt queue and history, like ComfyUI's ``execution.PromptQueue`` (in memory only).

Pending items live in a heap ordered by ``number`` (front=true makes it negative); GET /queue
shows the heap list as stored, not sorted, exactly as ComfyUI does. Items are
``(number, prompt_id, prompt, extra_data, outputs_to_execute, sensitive)``; clients only ever see
the first five fields.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAXIMUM_HISTORY_SIZE = 10000
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")


@dataclass
class QueueItem:
    number: int | float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]
    sensitive: dict[str, Any]

    def public(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


class PromptQueue:
    """Pending heap, the running item and the history; ``on_change`` fires on every queue change."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._heap: list[tuple[int | float, str, int, QueueItem]] = []
        self._order = itertools.count()
        self._ids = itertools.count()
        self._available = asyncio.Event()
        self.running: dict[int, QueueItem] = {}
        self.history: dict[str, dict[str, Any]] = {}

    @property
    def remaining(self) -> int:
        return len(self._heap) + len(self.running)

    def status(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self.remaining}}

    def put(self, item: QueueItem) -> None:
        heapq.heappush(self._heap, (item.number, item.prompt_id, next(self._order), item))
        self._available.set()
        self._on_change()

    async def get(self) -> tuple[int, QueueItem]:
        while not self._heap:
            self._available.clear()
            await self._available.wait()
        item = heapq.heappop(self._heap)[3]
        item_id = next(self._ids)
        self.running[item_id] = item
        self._on_change()
        return item_id, item

    def task_done(self, item_id: int, result: dict[str, Any], status: dict[str, Any]) -> None:
        item = self.running.pop(item_id)
        if len(self.history) > MAXIMUM_HISTORY_SIZE:
            self.history.pop(next(iter(self.history)))
        for key in SENSITIVE_EXTRA_DATA_KEYS:
            item.extra_data.pop(key, None)
        entry: dict[str, Any] = {"prompt": item.public(), "outputs": {}, "status": status}
        entry.update(result)
        self.history[item.prompt_id] = entry
        self._on_change()

    def running_items(self) -> list[QueueItem]:
        return list(self.running.values())

    def pending_items(self) -> list[QueueItem]:
        """Pending items in heap order (what GET /queue shows)."""
        return [entry[3] for entry in self._heap]

    def wipe(self) -> None:
        self._heap = []
        self._on_change()

    def delete(self, prompt_id: str) -> bool:
        """Remove the first pending item with this id; the running one is never touched."""
        for index, entry in enumerate(self._heap):
            if entry[3].prompt_id == prompt_id:
                if len(self._heap) == 1:
                    self.wipe()  # ComfyUI announces the wipe and then the deletion
                else:
                    self._heap.pop(index)
                    heapq.heapify(self._heap)
                self._on_change()
                return True
        return False

    def get_history(self, max_items: int | None = None, offset: int = -1) -> dict[str, Any]:
        """``max_items`` newest entries by default; ``offset`` counts from the oldest entry."""
        if offset < 0 and max_items is not None:
            offset = len(self.history) - max_items
        out: dict[str, Any] = {}
        for index, (key, value) in enumerate(self.history.items()):
            if index >= offset:
                out[key] = value
                if max_items is not None and len(out) >= max_items:
                    break
        return out

    def wipe_history(self) -> None:
        self.history.clear()

    def delete_history_item(self, prompt_id: str) -> None:
        self.history.pop(prompt_id, None)
