"""``comfyfarm bench outputs``: a big output streamed from ComfyUI's ``/view`` into ``file://``
storage the way a worker does it, against a plain loopback download of the same file.

- **farm path**: ``ComfyClient.iter_output`` (1 MiB chunks) → ``LocalStore.write`` (temp file
  written by the calling thread with write-behind, the BLAKE3 digest in a helper thread at the
  same time, fsync, rename, directory fsync): what a worker does by default. RSS growth of this
  process is measured around it (``PeakRssGrowth``): streaming must not hold the file in memory.
- **farm path with SHA-256**: the same into a store opened with ``?digest=sha256``
  (``COMFYFARM_OUTPUT_DIGEST=sha256``); SHA-256 is 2-4 × slower than BLAKE3 on one core and
  bounds this path on a fast disk.
- **farm path without digests**: the same into a store opened with ``?digest=none``: what the
  copy itself costs, durability included, without the hash.
- **farm path without fsync**: BLAKE3 again, into a store opened with ``?fsync=0``
  (``COMFYFARM_STORAGE_FSYNC=0``): the copy returns when the bytes are in the page cache, as the
  plain download does, not when they are on disk.
- **plain download**: ``requests.get(stream=True)`` → ``iter_content(1 MiB)`` → a file; no
  digest, no fsync (the reference of the ratio).
- **plain download + fsync**: the same, with one fsync at the end: what durability alone costs
  on this disk, to tell it apart from the streaming code.

Where the time goes (``phases``, each on its own, same medians): the download alone (``/view``
read by ``iter_output``, bytes dropped), BLAKE3 over the file in memory, writing it from memory
into the page cache, the fsync after that write, and the same write with the store's write-behind
followed by its (then short) fsync.

Besides wall-clock speeds it reports the CPU time this process spent per MB on each path (all
its threads; the simulator serving the file is another process) and the load average when it
started: the digest is hidden behind the copy only while a spare core is free, so on a busy
machine the ratio falls toward plain CPU / farm CPU.

A random file of ``size_mb`` MiB is written into the simulator's ``output/`` folder first. Each
path runs ``repeats`` times, interleaved (plain, plain + fsync, farm, farm with SHA-256, farm
without digests, farm without fsync, phases; then from plain + fsync, ...); speeds are medians,
the RSS growth is the largest seen. MB here means MiB (2**20 bytes).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import requests

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.outputs import OutputFile
from comfyfarm.services import SimulatorProcess
from comfyfarm.storage import LocalStore
from comfyfarm_bench.memory import PeakRssGrowth
from comfyfarm_bench.outputs_phases import PHASES, measure_phases

MIB = 1 << 20
CHUNK = MIB
FILENAME = "bench_output.bin"


@dataclass(frozen=True)
class OutputsFigures:
    size_mb: float
    repeats: int
    farm_mb_s: float
    farm_sha256_mb_s: float
    farm_no_digest_mb_s: float
    farm_no_fsync_mb_s: float
    plain_mb_s: float
    plain_fsync_mb_s: float
    farm_rss_growth_mb: float
    hwm_reset: bool
    cpu_ms_per_mb: dict[str, float] = field(default_factory=dict)
    load_average: float = 0.0
    #: Seconds (median) of each step measured on its own, by ``PHASES`` name.
    phases: dict[str, float] = field(default_factory=dict)
    #: Slowest and fastest run of each path in MB/s, by the path's field name without ``_mb_s``
    #: (``farm``, ``plain``, ...): on a shared machine the median alone hides how far runs scatter.
    spread: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.farm_mb_s / self.plain_mb_s if self.plain_mb_s else 0.0

    @property
    def ratio_durable(self) -> float:
        """Farm path (BLAKE3) against the plain download + fsync: both durable when done."""
        return self.farm_mb_s / self.plain_fsync_mb_s if self.plain_fsync_mb_s else 0.0

    @property
    def ratio_no_fsync(self) -> float:
        """Farm path without fsync (``COMFYFARM_STORAGE_FSYNC=0``) against the plain download."""
        return self.farm_no_fsync_mb_s / self.plain_mb_s if self.plain_mb_s else 0.0

    @property
    def ratio_no_fsync_durable(self) -> float:
        return self.farm_no_fsync_mb_s / self.plain_fsync_mb_s if self.plain_fsync_mb_s else 0.0

    @property
    def ratio_sha256(self) -> float:
        return self.farm_sha256_mb_s / self.plain_mb_s if self.plain_mb_s else 0.0

    @property
    def ratio_no_digest(self) -> float:
        return self.farm_no_digest_mb_s / self.plain_mb_s if self.plain_mb_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "bench": "outputs",
            "size_mb": self.size_mb,
            "repeats": self.repeats,
            "digest": "blake3",
            "farm_mb_s": round(self.farm_mb_s, 1),
            "farm_sha256_mb_s": round(self.farm_sha256_mb_s, 1),
            "farm_no_digest_mb_s": round(self.farm_no_digest_mb_s, 1),
            "farm_no_fsync_mb_s": round(self.farm_no_fsync_mb_s, 1),
            "plain_mb_s": round(self.plain_mb_s, 1),
            "plain_fsync_mb_s": round(self.plain_fsync_mb_s, 1),
            "ratio": round(self.ratio, 4),
            "ratio_sha256": round(self.ratio_sha256, 4),
            "ratio_durable": round(self.ratio_durable, 4),
            "ratio_no_digest": round(self.ratio_no_digest, 4),
            "ratio_no_fsync": round(self.ratio_no_fsync, 4),
            "ratio_no_fsync_durable": round(self.ratio_no_fsync_durable, 4),
            "phases_ms": {k: round(1000 * v, 1) for k, v in self.phases.items()},
            "spread_mb_s": {k: [round(lo, 1), round(hi, 1)] for k, (lo, hi) in self.spread.items()},
            "farm_rss_growth_mb": round(self.farm_rss_growth_mb, 2),
            "rss_peak_from": "VmHWM+samples" if self.hwm_reset else "samples",
            "cpu_ms_per_mb": {k: round(v, 2) for k, v in self.cpu_ms_per_mb.items()},
            "load_average": round(self.load_average, 2),
        }

    def __str__(self) -> str:
        def row(name: str, path: str) -> str:
            low, high = self.spread.get(path, (0.0, 0.0))
            speed = getattr(self, f"{path}_mb_s")
            return f"  {name:<58} {speed:7,.0f} MB/s (runs {low:,.0f}-{high:,.0f})\n"

        return (
            f"{self.size_mb:g} MB output, median of {self.repeats}:\n"
            + row("farm path, BLAKE3 (/view → iter_output → LocalStore.write)", "farm")
            + row("farm path, SHA-256 (?digest=sha256)", "farm_sha256")
            + row("farm path, no digest (?digest=none)", "farm_no_digest")
            + row("farm path, no fsync (COMFYFARM_STORAGE_FSYNC=0)", "farm_no_fsync")
            + row("plain download (requests → file)", "plain")
            + row("plain download + fsync", "plain_fsync")
            + f"  ratio against the plain download: durable (default) {self.ratio:.3f}, "
            f"no fsync {self.ratio_no_fsync:.3f}, SHA-256 {self.ratio_sha256:.3f}, "
            f"no digest {self.ratio_no_digest:.3f}\n"
            f"  ratio against the plain download + fsync: durable (default) "
            f"{self.ratio_durable:.3f}, no fsync {self.ratio_no_fsync_durable:.3f}\n"
            f"  where the time goes, each step alone: "
            + ", ".join(_phase_text(k, v, self.size_mb) for k, v in self.phases.items())
            + f"\n  RSS growth during the farm path: {self.farm_rss_growth_mb:.1f} MB\n"
            f"  CPU of this process per MB: "
            + ", ".join(f"{k} {v:.2f} ms" for k, v in self.cpu_ms_per_mb.items())
            + f"; load average at start {self.load_average:.1f} on {os.cpu_count()} CPUs"
        )


def _phase_text(name: str, seconds: float, size_mb: float) -> str:
    """fsyncs are shown in ms (their speed says nothing), the other steps in MB/s."""
    if "fsync" in name or not seconds:
        return f"{name} {1000 * seconds:.0f} ms"
    return f"{name} {size_mb / seconds:,.0f} MB/s"


def write_random_file(path: Path, size_mb: float) -> int:
    """``size_mb`` MiB of incompressible bytes (one random MiB repeated); returns the size."""
    block = os.urandom(CHUNK)
    total = int(size_mb * MIB)
    with path.open("wb") as handle:
        left = total
        while left > 0:
            handle.write(block[: min(left, CHUNK)])
            left -= CHUNK
    return total


def plain_download(url: str, dest: Path, *, fsync: bool = False) -> int:
    """Stream ``url`` into ``dest`` with requests (then fsync it if asked); returns bytes."""
    written = 0
    with requests.get(url, stream=True, timeout=60) as response, dest.open("wb") as handle:
        response.raise_for_status()
        for chunk in response.iter_content(chunk_size=CHUNK):
            handle.write(chunk)
            written += len(chunk)
        if fsync:
            handle.flush()
            os.fsync(handle.fileno())
    return written


@dataclass
class _Samples:
    """Seconds per run of each path, and the largest RSS growth of the farm path."""

    plain: list[float] = field(default_factory=list)
    plain_fsync: list[float] = field(default_factory=list)
    farm: list[float] = field(default_factory=list)
    farm_sha256: list[float] = field(default_factory=list)
    farm_no_digest: list[float] = field(default_factory=list)
    farm_no_fsync: list[float] = field(default_factory=list)
    phases: dict[str, list[float]] = field(default_factory=dict)
    growth_mb: float = 0.0
    hwm_reset: bool = True
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def add_cpu(self, path: str, seconds: float) -> None:
        self.cpu.setdefault(path, []).append(seconds)


def run_outputs(size_mb: float, *, repeats: int = 3, log: TextIO | None = None) -> OutputsFigures:
    """Start a simulator on a temp root, put the file in its ``output/``, time the paths;
    progress goes to ``log`` (default: ``sys.stderr`` as it is when called)."""
    log = sys.stderr if log is None else log
    if size_mb <= 0 or repeats < 1:
        raise ValueError("size_mb must be positive and repeats at least 1")
    with tempfile.TemporaryDirectory(prefix="comfyfarm-bench-outputs-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "sim" / "output").mkdir(parents=True)
        (tmp / "plain").mkdir()
        size = write_random_file(tmp / "sim" / "output" / FILENAME, size_mb)
        samples = _Samples()
        load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        with (
            SimulatorProcess(args=["--root", str(tmp / "sim")]) as sim,
            ComfyClient(sim.url) as client,
        ):
            client.system_stats()  # connect (and detect routes) outside the timing
            for attempt in range(repeats):
                print(f"outputs: run {attempt + 1}/{repeats}", file=log)
                _run_once(client, tmp, size, samples, attempt)
    mb = size / MIB
    return OutputsFigures(
        size_mb=mb,
        repeats=repeats,
        farm_mb_s=mb / statistics.median(samples.farm),
        farm_sha256_mb_s=mb / statistics.median(samples.farm_sha256),
        farm_no_digest_mb_s=mb / statistics.median(samples.farm_no_digest),
        farm_no_fsync_mb_s=mb / statistics.median(samples.farm_no_fsync),
        plain_mb_s=mb / statistics.median(samples.plain),
        plain_fsync_mb_s=mb / statistics.median(samples.plain_fsync),
        farm_rss_growth_mb=samples.growth_mb,
        hwm_reset=samples.hwm_reset,
        cpu_ms_per_mb={k: 1000 * statistics.median(v) / mb for k, v in samples.cpu.items()},
        load_average=load_average,
        phases={k: statistics.median(samples.phases[k]) for k in PHASES if k in samples.phases},
        spread={
            path: (mb / max(times), mb / min(times))
            for path, times in (
                ("farm", samples.farm),
                ("farm_sha256", samples.farm_sha256),
                ("farm_no_digest", samples.farm_no_digest),
                ("farm_no_fsync", samples.farm_no_fsync),
                ("plain", samples.plain),
                ("plain_fsync", samples.plain_fsync),
            )
        },
    )


def _run_once(client: ComfyClient, tmp: Path, size: int, samples: _Samples, attempt: int) -> None:
    """Each path once, starting one path later on every attempt: which path runs right after
    another one's file was deleted (its pages freed, its writeback maybe still running) changes,
    so no path is always the one that pays for it."""
    output = OutputFile(
        node_id="x", kind="images", index=0, filename=FILENAME, subfolder="", type="output",
        extra={},
    )  # fmt: skip
    paths: list[Callable[[], None]] = [
        partial(_plain_once, client, tmp, size, samples, fsync=False),
        partial(_plain_once, client, tmp, size, samples, fsync=True),
        *(
            partial(_farm_once, client, output, store, size, samples, name, times)
            for name, store, times in (
                ("farm blake3", LocalStore(tmp / "store", digest="blake3"), samples.farm),
                ("farm sha256", LocalStore(tmp / "store", digest="sha256"), samples.farm_sha256),
                ("farm none", LocalStore(tmp / "store", digest="none"), samples.farm_no_digest),
                ("farm no fsync", LocalStore(tmp / "store", fsync=False), samples.farm_no_fsync),
            )
        ),
    ]
    shift = attempt % len(paths)
    for path in paths[shift:] + paths[:shift]:
        path()
    for phase, seconds in measure_phases(client, output, tmp / "phases", size).items():
        samples.phases.setdefault(phase, []).append(seconds)


def _plain_once(
    client: ComfyClient, tmp: Path, size: int, samples: _Samples, *, fsync: bool
) -> None:
    view_url = f"{client.base_url}/view?filename={FILENAME}&type=output&subfolder="
    plain_dest = tmp / "plain" / "copy.bin"
    started, cpu = time.perf_counter(), time.process_time()
    got = plain_download(view_url, plain_dest, fsync=fsync)
    (samples.plain_fsync if fsync else samples.plain).append(time.perf_counter() - started)
    if not fsync:
        samples.add_cpu("plain", time.process_time() - cpu)
    plain_dest.unlink()
    if got != size:
        raise RuntimeError(f"short download: {got} of {size} bytes")


def _farm_once(
    client: ComfyClient,
    output: OutputFile,
    store: LocalStore,
    size: int,
    samples: _Samples,
    name: str,
    times: list[float],
) -> None:
    with PeakRssGrowth() as peak:
        started, cpu = time.perf_counter(), time.process_time()
        stored = store.write("bench/copy.bin", client.iter_output(output))
        times.append(time.perf_counter() - started)
        samples.add_cpu(name, time.process_time() - cpu)
    store.delete("bench/copy.bin")
    if stored.bytes != size:
        raise RuntimeError(f"short copy: {stored.bytes} of {size} bytes")
    samples.growth_mb = max(samples.growth_mb, peak.growth_mb)
    samples.hwm_reset = samples.hwm_reset and peak.hwm_reset
