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
- **plain download**: ``requests.get(stream=True)`` → ``iter_content(1 MiB)`` → a file; no
  digest, no fsync (the reference of the ratio).
- **plain download + fsync**: the same, with one fsync at the end: what durability alone costs
  on this disk, to tell it apart from the streaming code.

A random file of ``size_mb`` MiB is written into the simulator's ``output/`` folder first. Each
path runs ``repeats`` times, interleaved (plain, plain + fsync, farm, farm with SHA-256, farm
without digests, plain, ...); speeds are medians, the RSS growth is the largest seen. MB here
means MiB (2**20 bytes).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import requests

from comfyfarm.comfy.client import ComfyClient
from comfyfarm.comfy.outputs import OutputFile
from comfyfarm.services import SimulatorProcess
from comfyfarm.storage import LocalStore
from comfyfarm_bench.memory import PeakRssGrowth

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
    plain_mb_s: float
    plain_fsync_mb_s: float
    farm_rss_growth_mb: float
    hwm_reset: bool

    @property
    def ratio(self) -> float:
        return self.farm_mb_s / self.plain_mb_s if self.plain_mb_s else 0.0

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
            "plain_mb_s": round(self.plain_mb_s, 1),
            "plain_fsync_mb_s": round(self.plain_fsync_mb_s, 1),
            "ratio": round(self.ratio, 4),
            "ratio_sha256": round(self.ratio_sha256, 4),
            "ratio_no_digest": round(self.ratio_no_digest, 4),
            "farm_rss_growth_mb": round(self.farm_rss_growth_mb, 2),
            "rss_peak_from": "VmHWM+samples" if self.hwm_reset else "samples",
        }

    def __str__(self) -> str:
        return (
            f"{self.size_mb:g} MB output, median of {self.repeats}:\n"
            f"  farm path, BLAKE3 (/view → iter_output → LocalStore.write): "
            f"{self.farm_mb_s:,.0f} MB/s\n"
            f"  farm path, SHA-256 (?digest=sha256):                      "
            f"{self.farm_sha256_mb_s:,.0f} MB/s\n"
            f"  farm path, no digest (?digest=none):                      "
            f"{self.farm_no_digest_mb_s:,.0f} MB/s\n"
            f"  plain download (requests → file):                         "
            f"{self.plain_mb_s:,.0f} MB/s\n"
            f"  plain download + fsync:                                   "
            f"{self.plain_fsync_mb_s:,.0f} MB/s\n"
            f"  ratio farm/plain: BLAKE3 {self.ratio:.3f}, SHA-256 {self.ratio_sha256:.3f}, "
            f"no digest {self.ratio_no_digest:.3f}; RSS growth during the farm path: "
            f"{self.farm_rss_growth_mb:.1f} MB"
        )


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
    growth_mb: float = 0.0
    hwm_reset: bool = True


def run_outputs(size_mb: float, *, repeats: int = 3, log: TextIO = sys.stderr) -> OutputsFigures:
    """Start a simulator on a temp root, put the file in its ``output/``, time the paths."""
    if size_mb <= 0 or repeats < 1:
        raise ValueError("size_mb must be positive and repeats at least 1")
    with tempfile.TemporaryDirectory(prefix="comfyfarm-bench-outputs-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "sim" / "output").mkdir(parents=True)
        (tmp / "plain").mkdir()
        size = write_random_file(tmp / "sim" / "output" / FILENAME, size_mb)
        samples = _Samples()
        with (
            SimulatorProcess(args=["--root", str(tmp / "sim")]) as sim,
            ComfyClient(sim.url) as client,
        ):
            client.system_stats()  # connect (and detect routes) outside the timing
            for attempt in range(repeats):
                print(f"outputs: run {attempt + 1}/{repeats}", file=log)
                _run_once(client, tmp, size, samples)
    mb = size / MIB
    return OutputsFigures(
        size_mb=mb,
        repeats=repeats,
        farm_mb_s=mb / statistics.median(samples.farm),
        farm_sha256_mb_s=mb / statistics.median(samples.farm_sha256),
        farm_no_digest_mb_s=mb / statistics.median(samples.farm_no_digest),
        plain_mb_s=mb / statistics.median(samples.plain),
        plain_fsync_mb_s=mb / statistics.median(samples.plain_fsync),
        farm_rss_growth_mb=samples.growth_mb,
        hwm_reset=samples.hwm_reset,
    )


def _run_once(client: ComfyClient, tmp: Path, size: int, samples: _Samples) -> None:
    view_url = f"{client.base_url}/view?filename={FILENAME}&type=output&subfolder="
    plain_dest = tmp / "plain" / "copy.bin"
    for fsync, times in ((False, samples.plain), (True, samples.plain_fsync)):
        started = time.perf_counter()
        got = plain_download(view_url, plain_dest, fsync=fsync)
        times.append(time.perf_counter() - started)
        plain_dest.unlink()
        if got != size:
            raise RuntimeError(f"short download: {got} of {size} bytes")
    output = OutputFile(
        node_id="x", kind="images", index=0, filename=FILENAME, subfolder="", type="output",
        extra={},
    )  # fmt: skip
    for store, times in (
        (LocalStore(tmp / "store", digest="blake3"), samples.farm),
        (LocalStore(tmp / "store", digest="sha256"), samples.farm_sha256),
        (LocalStore(tmp / "store", digest="none"), samples.farm_no_digest),
    ):
        with PeakRssGrowth() as peak:
            started = time.perf_counter()
            stored = store.write("bench/copy.bin", client.iter_output(output))
            times.append(time.perf_counter() - started)
        store.delete("bench/copy.bin")
        if stored.bytes != size:
            raise RuntimeError(f"short copy: {stored.bytes} of {size} bytes")
        samples.growth_mb = max(samples.growth_mb, peak.growth_mb)
        samples.hwm_reset = samples.hwm_reset and peak.hwm_reset
