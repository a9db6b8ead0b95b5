"""``comfyfarm bench soak``: many jobs through the whole farm while processes crash, hang and die.

One run starts an embedded Valkey, ``workers`` simulators with random job faults (``crash``,
``hang``, ``drop_ws`` at ``fault_rate`` each per executed prompt) and one ``comfyfarm worker`` per
simulator with the short reliability settings of ``SOAK_ENV`` (those of the fault tests, see
``tests/reliability/conftest.py``), or with ``defaults`` the product's own settings (95-minute
visibility timeout, 30 s lease, 120 s stall timeout; only the simulated job time is the soak's).
It submits every job at once (``Farm.submit_many``; the model-free ``empty_invert`` workflow, 8×8
pixels, one distinct colour per job, so no two prompts are alike and ComfyUI's cache never serves
one). While they run, ``SimKeeper`` threads restart
crashed, hung and unresponsive simulators on their ports and ``WorkerKiller`` SIGKILLs a random
worker's process group every ``kill_every`` seconds and starts it again. The run ends when every
job has a final result, when the only jobs left have had no message anywhere for five minutes
(``comfyfarm_bench.soak_whereabouts``: lost, nothing would bring them back), or when ``timeout``
seconds have passed; then, for ``settle`` seconds (a
visibility timeout plus a little), nothing is injected and the simulators are still watched, so a
stale copy of a job that runs again late is seen too.

Summary (``SoakSummary.to_dict``), what each number means:

- ``succeeded`` / ``failed_permanent`` / ``cancelled``: final JobResult status (``failed_by_error``
  breaks failures down by error type); ``lost``: no final result by the end (must be 0; the first
  ones are listed with their status, where their message is — ``queued``, ``unacked``, ``leased``
  or ``nowhere`` — and every worker log line naming them);
- ``retried``: results with ``attempts`` > 1 (Celery retries; a redelivery after a worker kill is
  not a retry and does not count);
- ``duplicate_executions`` (must be 0): executions of a prompt id (= job id) that had already
  completed on a simulator incarnation still alive when the new run started (see
  ``comfyfarm_bench.soak_ledger``). Not duplicates: a run killed by a crash or by the restart of
  a hung simulator (it never ends, so the simulator never records it), and a run after every
  earlier completion of the prompt was on an incarnation that had died since — its history died
  with it, running again is the only way to the outputs (``reexecuted_after_loss``);
- what ``duplicate_executions`` cannot see: the simulator records a run when it ends, and the soak
  sees it at its next poll (``poll`` seconds). A run that ended less than one poll before its
  simulator crashed (or was restarted after a hang) is invisible, so a duplicate made of such a
  run is missed; and a run whose simulator was killed while it ran is not an execution at all.
  The cross-check with the results narrows that: ``executions_exceeding_attempts`` lists jobs
  with more visible completed executions than attempts (each attempt POSTs at most once;
  re-executions after loss are not counted, as a redelivery after a worker kill runs a prompt
  whose ComfyUI died meanwhile again without a new attempt number), and ``succeeded_unobserved``
  counts succeeded jobs without any visible completed execution (their run ended just before a
  crash; expected to be small, not zero: about 3 % of jobs at a 2 % crash rate);
- ``faults_injected``: ``crash`` (simulator exits with the crash code), ``hang`` (hung simulators
  restarted), ``drop_ws`` (as reported fired by the simulators), ``worker_kill``;
- ``missing_outputs``: succeeded jobs whose output file is not in the store;
- ``recovery``: per worker kill, seconds until every job it held was taken over by another worker
  (``recovery_seconds`` p50/max over the kills, see ``comfyfarm_bench.soak_recovery``), the
  takeover's own part of it (``requeue_seconds``: until the killed worker's deliveries were back
  on their queues), and per kill ``all_hung_seconds``: how much of the recovery every simulator
  was hung (no worker could start anything).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from comfyfarm.producer import Farm, Job
from comfyfarm.services import RedisServer, SimulatorProcess, worker_process
from comfyfarm.tasks.keyspace import job_result_key
from comfyfarm.tasks.models import JobResult
from comfyfarm.tasks.settings import Settings
from comfyfarm.workflows import PreparedJob, prepare_jobs
from comfyfarm_bench.farm import farm_environment
from comfyfarm_bench.fleet import start_concurrently, stop_all
from comfyfarm_bench.soak_faults import (
    LoggedProcess,
    SimKeeper,
    WorkerKiller,
    WorkerSlot,
    kill_group,
)
from comfyfarm_bench.soak_ledger import ExecutionLedger
from comfyfarm_bench.soak_recovery import Hangs, RecoveryWatch
from comfyfarm_bench.soak_whereabouts import GoneWatch, whereabouts
from comfyfarm_bench.workers import WORKER_READY_TIMEOUT

#: The fault tests' recovery in seconds (tests/reliability/conftest.py ``FAST``): jobs run at most
#: 6 s, a dead worker's job is swept back after 8 s (sweep every 0.5 s), leases last 1.5 s.
SOAK_ENV = {
    "COMFYFARM_MAX_JOB_SECONDS": "6",
    "COMFYFARM_VISIBILITY_TIMEOUT": "8",
    "COMFYFARM_RESTORE_INTERVAL": "0.5",
    "COMFYFARM_LEASE_SECONDS": "1.5",
    "COMFYFARM_STALL_TIMEOUT": "3",
    "COMFYFARM_MAX_RETRIES": "2",
    "COMFYFARM_MAX_RETRY_DELAY": "4",
}
FAULT_KINDS = ("crash", "hang", "drop_ws")
WORKFLOW = "empty_invert"
_COLOURS = 1 << 24
RESULT_POLL = 0.5
LOST_SHOWN = 10


class SoakError(ValueError):
    """Raised when soak options are out of range (nothing was started)."""


@dataclass(frozen=True)
class SoakOptions:
    jobs: int = 2000
    workers: int = 4
    faults: bool = True
    fault_rate: float = 0.02
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    job_ms: float = 20.0
    kill_every: float = 30.0  # 0: no worker kills
    seed: int = 1
    timeout: float = 900.0
    settle: float = 10.0
    poll: float = 0.1
    depth: int = 1
    workdir: Path | None = None  # kept; default: a temporary one, removed unless jobs went wrong
    defaults: bool = False  # the product's settings instead of SOAK_ENV's short timeouts

    def check(self) -> None:
        if self.jobs < 1 or self.workers < 1:
            raise SoakError("--jobs and --workers must be >= 1")
        if self.jobs > _COLOURS:
            raise SoakError(f"at most {_COLOURS} jobs (one colour each)")
        if not 0 <= self.fault_rate <= 1:
            raise SoakError("--fault-rate must be between 0 and 1")
        if self.job_ms < 0 or self.kill_every < 0 or self.timeout <= 0 or self.settle < 0:
            raise SoakError("--job-ms, --kill-every, --settle must be >= 0, --timeout > 0")
        unknown = set(self.fault_kinds) - set(FAULT_KINDS)
        if unknown:
            raise SoakError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")

    @property
    def settings_env(self) -> dict[str, str]:
        """The COMFYFARM_* settings of workers and producer: none (defaults) or ``SOAK_ENV``."""
        return {} if self.defaults else dict(SOAK_ENV)

    @property
    def stall_timeout(self) -> float:
        return Settings.from_env(self.settings_env).stall_timeout


@dataclass
class SoakSummary:
    """The outcome of one soak (see the module docstring for each number)."""

    options: SoakOptions
    submitted: int = 0
    results: dict[str, JobResult] = field(default_factory=dict)
    lost_jobs: list[dict[str, Any]] = field(default_factory=list)
    execution: dict[str, Any] = field(default_factory=dict)
    executions_exceeding_attempts: list[str] = field(default_factory=list)
    succeeded_unobserved: list[str] = field(default_factory=list)
    missing_outputs: list[str] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    queued_at_end: int = 0
    timed_out: bool = False
    seconds: float = 0.0
    workdir: str | None = None
    recovery: dict[str, Any] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(1 for result in self.results.values() if result.status == status)

    @property
    def lost(self) -> int:
        return self.submitted - len(self.results)

    @property
    def duplicate_executions(self) -> int:
        return int(self.execution.get("duplicate_executions", 0))

    @property
    def healthy(self) -> bool:
        return self.lost == 0 and self.duplicate_executions == 0

    def to_dict(self) -> dict[str, Any]:
        failed = Counter(
            str((result.error or {}).get("type", "unknown"))
            for result in self.results.values()
            if result.status == "failed"
        )
        attempts = Counter(result.attempts for result in self.results.values())
        options = self.options
        return {
            "benchmark": "soak",
            "submitted": self.submitted,
            "succeeded": self.count("succeeded"),
            "failed_permanent": self.count("failed"),
            "failed_by_error": dict(sorted(failed.items())),
            "cancelled": self.count("cancelled"),
            "lost": self.lost,
            "lost_jobs": self.lost_jobs,
            "duplicate_executions": self.duplicate_executions,
            "retried": sum(1 for result in self.results.values() if result.attempts > 1),
            "attempts": {str(k): v for k, v in sorted(attempts.items())},
            "executions": self.execution,
            "executions_exceeding_attempts": self.executions_exceeding_attempts,
            "succeeded_unobserved": len(self.succeeded_unobserved),
            "succeeded_unobserved_ids": self.succeeded_unobserved[:20],
            "missing_outputs": len(self.missing_outputs),
            "faults_injected": self.faults,
            "recovery": self.recovery,
            "sim_restarts": self.restarts,
            "queued_at_end": self.queued_at_end,
            "timed_out": self.timed_out,
            "seconds": round(self.seconds, 1),
            "jobs_per_second": round(len(self.results) / self.seconds, 2) if self.seconds else 0,
            "options": {
                "jobs": options.jobs,
                "workers": options.workers,
                "faults": list(options.fault_kinds) if options.faults else [],
                "fault_rate": options.fault_rate if options.faults else 0.0,
                "job_ms": options.job_ms,
                "kill_every": options.kill_every,
                "seed": options.seed,
                "timeout": options.timeout,
                "depth": options.depth,
                "settings": options.settings_env or "product defaults",
            },
            "workdir": self.workdir,
        }


def soak_jobs(count: int, rng: random.Random) -> list[PreparedJob]:
    """``count`` distinct 8×8 ``empty_invert`` prompts (consecutive colours from a random base)."""
    base = rng.randrange(_COLOURS - count + 1)
    return prepare_jobs(
        WORKFLOW,
        schema=None,
        params=["width=8", "height=8"],
        sweeps=[f"color={base}..{base + count - 1}"],
    )


def run_soak(options: SoakOptions) -> SoakSummary:
    """Run one soak (see the module docstring); never raises for what jobs did."""
    options.check()
    rng = random.Random(options.seed)
    jobs = soak_jobs(options.jobs, rng)
    own_workdir = options.workdir is None
    workdir = (options.workdir or Path(tempfile.mkdtemp(prefix="comfyfarm-soak-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    summary = SoakSummary(options)
    ledger = ExecutionLedger()
    began = time.monotonic()
    deadline = began + options.timeout
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(RedisServer())
        sims = stack.enter_context(_fleet(options))
        env = {**farm_environment(redis.url, workdir / "store"), **options.settings_env}
        env["PYTHONUNBUFFERED"] = "1"
        slots = stack.enter_context(_workers(options, sims, env, workdir))
        farm = stack.enter_context(Farm(Settings.from_env(env)))
        keepers = [
            SimKeeper(
                index,
                sim,
                ledger,
                _fault_args_of(options, index),
                poll=options.poll,
                hang_seconds=options.stall_timeout + 1.0,
            )
            for index, sim in enumerate(sims)
        ]
        for keeper in keepers:
            stack.callback(keeper.stop)  # before the simulators stop: no restarts then
            keeper.start()
        watch = RecoveryWatch(farm.redis, farm.settings.key_prefix)
        stack.callback(watch.stop)
        killer = WorkerKiller(
            slots, options.kill_every if options.faults else 0.0, rng=rng, watch=watch
        )
        stack.callback(killer.stop)
        killer.start()
        handles = farm.submit_many(jobs)
        summary.submitted = len(handles)
        gone = GoneWatch(farm.redis, farm.settings.key_prefix)
        summary.results = _collect(farm, handles, deadline, gone)
        summary.timed_out = len(summary.results) < len(handles)
        killer.stop()
        _settle(options.settle, deadline=deadline + options.settle)
        for keeper in keepers:
            keeper.stop()
            keeper.poll_once()
        summary.queued_at_end = sum(depth.total for depth in farm.queue_depths())
        summary.lost_jobs = _lost(farm, handles, summary.results, workdir)
        watch.stop()
        summary.recovery = watch.to_dict(_hangs(keepers))
    summary.seconds = time.monotonic() - began
    _account(summary, ledger, keepers, killer)
    if own_workdir and summary.healthy:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        summary.workdir = str(workdir)
        _dump(workdir, summary, ledger, keepers, killer)
    return summary


def _dump(
    workdir: Path,
    summary: SoakSummary,
    ledger: ExecutionLedger,
    keepers: list[SimKeeper],
    killer: WorkerKiller,
) -> None:
    """What happened, for a person looking into a failed soak: ``events.json`` (restarts and
    kills), ``runs.jsonl`` (every visible run), ``results.jsonl`` (every final result)."""
    events = [event for keeper in keepers for event in keeper.events] + killer.events
    (workdir / "events.json").write_text(json.dumps(events, indent=1))
    with (workdir / "runs.jsonl").open("w") as out:
        for run in ledger.runs():
            out.write(json.dumps(dataclasses.asdict(run)) + "\n")
    with (workdir / "results.jsonl").open("w") as out:
        for result in summary.results.values():
            out.write(json.dumps(result.to_dict()) + "\n")


def _fault_args_of(options: SoakOptions, index: int) -> Any:
    def fault_args(incarnation: int) -> list[str]:
        args = ["--job-ms", f"{options.job_ms:g}", "--load-ms", "0"]
        if options.faults and options.fault_rate > 0:
            # Hashed (a str seed goes through SHA-512): unrelated fault sequences per start.
            seed = random.Random(f"{options.seed}:{index}:{incarnation}").getrandbits(48)
            args += ["--fault-rate", f"{options.fault_rate:g}",
                     "--fault-kinds", ",".join(options.fault_kinds),
                     "--fault-seed", str(seed)]  # fmt: skip
        return args

    return fault_args


@contextlib.contextmanager
def _fleet(options: SoakOptions) -> Iterator[list[SimulatorProcess]]:
    sims = [
        SimulatorProcess(args=_fault_args_of(options, index)(0)) for index in range(options.workers)
    ]
    start_concurrently(sims, SimulatorProcess.start)
    try:
        yield sims
    finally:
        stop_all(sims)


@contextlib.contextmanager
def _workers(
    options: SoakOptions, sims: list[SimulatorProcess], env: dict[str, str], workdir: Path
) -> Iterator[list[WorkerSlot]]:
    """One worker per simulator, each logging whole to ``workdir/worker-<name>.log``."""
    slots = []
    for index, sim in enumerate(sims):
        name = f"soak{index}"
        base = worker_process(sim.url, name, env, args=["--depth", str(options.depth)])
        proc = LoggedProcess(
            base.argv, base.ready, base.name, base.env, log_path=workdir / f"worker-{name}.log"
        )
        slots.append(WorkerSlot(name, proc, WORKER_READY_TIMEOUT))
    start_concurrently(
        [slot.proc for slot in slots], lambda proc: proc.start(WORKER_READY_TIMEOUT), parallel=4
    )
    try:
        yield slots
    finally:
        stop_all([slot.proc for slot in slots])
        for slot in slots:
            kill_group(slot.proc, timeout=5.0)  # pool children a stop left behind


def _collect(
    farm: Farm, handles: list[Job], deadline: float, gone: GoneWatch
) -> dict[str, JobResult]:
    """Final results as they appear (the worker's result record, read in pipelines), until all
    are in, the rest are ``gone`` or ``deadline`` (monotonic). Each is then read once through
    ``Job.result()``."""
    prefix = farm.settings.key_prefix
    waiting = {handle.job_id: handle for handle in handles}
    results: dict[str, JobResult] = {}
    while waiting and time.monotonic() < deadline:
        ids = list(waiting)
        with farm.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.exists(job_result_key(prefix, job_id))
            present = pipe.execute()
        for job_id, exists in zip(ids, present, strict=True):
            if exists:
                result = waiting[job_id].result()
                if result is not None and result.status in ("succeeded", "failed", "cancelled"):
                    results[job_id] = result
                    del waiting[job_id]
        if waiting and gone.all_gone(list(waiting), time.monotonic()):
            break
        if waiting:
            time.sleep(RESULT_POLL)  # results are read in bulk; a pubsub per job costs more
    return results


def _hangs(keepers: list[SimKeeper]) -> Hangs:
    """When each simulator was hung: a keeper restarts one ``hang_seconds`` after its run last
    progressed, so it was hung for that long before each restart for a hang."""
    windows = [
        (float(event["ended"]) - keeper.hang_seconds, float(event["ended"]))
        for keeper in keepers
        for event in keeper.events
        if event.get("reason") == "hang"
    ]
    return Hangs(len(keepers), windows)


def _settle(seconds: float, *, deadline: float) -> None:
    time.sleep(max(0.0, min(seconds, deadline - time.monotonic())))


def _lost(
    farm: Farm, handles: list[Job], results: dict[str, JobResult], workdir: Path
) -> list[dict[str, Any]]:
    lost = [handle for handle in handles if handle.job_id not in results]
    places = whereabouts(
        farm.redis, farm.settings.key_prefix, [handle.job_id for handle in lost[:LOST_SHOWN]]
    )
    shown = []
    for handle in lost[:LOST_SHOWN]:
        lines = []
        for log_file in sorted(workdir.glob("worker-*.log")):
            with log_file.open(encoding="utf-8", errors="replace") as text:
                lines += [
                    f"{log_file.stem}: {line.rstrip()}" for line in text if handle.job_id in line
                ]
        shown.append({"job_id": handle.job_id, "status": handle.status(),
                      "message": places[handle.job_id], "log": lines[-20:]})  # fmt: skip
    return shown


def _account(
    summary: SoakSummary,
    ledger: ExecutionLedger,
    keepers: list[SimKeeper],
    killer: WorkerKiller,
) -> None:
    counted = ledger.analyse()
    summary.execution = counted.to_dict()
    for job_id, result in summary.results.items():
        completed = counted.completed_by_prompt.get(job_id, 0)
        if completed > result.attempts:
            summary.executions_exceeding_attempts.append(job_id)
        if result.status == "succeeded" and completed == 0:
            summary.succeeded_unobserved.append(job_id)
        if result.status == "succeeded":
            for output in result.outputs:
                if output.uri and not _stored(output.uri):
                    summary.missing_outputs.append(job_id)
    fired = ledger.faults_fired()
    restarts = {
        "crash": sum(k.counts.restarts_after_crash for k in keepers),
        "hang": sum(k.counts.restarts_after_hang for k in keepers),
        "unresponsive": sum(k.counts.restarts_unresponsive for k in keepers),
        "unexpected_exit": sum(k.counts.unexpected_exits for k in keepers),
        "failed_start": sum(k.counts.failed_starts for k in keepers),
    }
    summary.restarts = restarts
    summary.faults = {
        "crash": restarts["crash"],
        "hang": restarts["hang"],
        "hang_fired": fired.get("hang", 0),
        "drop_ws": fired.get("drop_ws", 0),
        "worker_kill": killer.kills,
        "worker_restart_failed": killer.failed_restarts,
    }


def _stored(uri: str) -> bool:
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return True  # only the soak's own file store is checked
    return Path(unquote(parsed.path)).is_file()


def summary_json(summary: SoakSummary) -> str:
    return json.dumps(summary.to_dict(), sort_keys=False)
