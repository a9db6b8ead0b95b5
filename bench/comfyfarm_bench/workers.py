"""The farm's workers for a benchmark: one ``comfyfarm worker`` subprocess per ComfyUI, exactly
as an operator starts them (prefork pool, pipelining depth 1), plus their memory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType

from comfyfarm.services import ManagedProcess, worker_process
from comfyfarm_bench.fleet import start_concurrently, stop_all
from comfyfarm_bench.memory import TreeMemory, tree_memory

WORKER_READY_TIMEOUT = 180.0  # 32 workers importing Celery at once on two cores are slow


class WorkerPool:
    """Workers ``bench0..N-1``, worker ``i`` bound to ``urls[i]``, with environment ``env``."""

    def __init__(
        self, urls: Sequence[str], env: Mapping[str, str], *, loglevel: str = "INFO"
    ) -> None:
        # INFO: Celery prints the "ready." line we wait for at that level.
        self.procs = [
            worker_process(url, f"bench{index}", env, loglevel=loglevel)
            for index, url in enumerate(urls)
        ]

    @property
    def pids(self) -> list[int]:
        """Main process ids (their prefork children are found through ``/proc``)."""
        return [proc.pid for proc in self.procs]

    def memory(self) -> TreeMemory:
        return tree_memory(self.pids)

    def start(self) -> WorkerPool:
        start_concurrently(self.procs, _start_worker, parallel=4)
        return self

    def stop(self) -> None:
        stop_all(self.procs)

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _start_worker(proc: ManagedProcess) -> None:
    proc.start(WORKER_READY_TIMEOUT)
