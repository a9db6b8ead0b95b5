"""Benchmark: how many jobs per second ``submit_many`` enqueues (no workers needed).

``python -m comfyfarm_bench.enqueue_bench [--count N] [--chunk N] [--broker-url URL]``; without
a URL (argument or COMFYFARM_BROKER_URL) it starts an embedded Valkey for the run.
``bench_enqueue()`` is the function ``comfyfarm bench enqueue`` calls. Jobs go to a throw-away
key prefix that is deleted afterwards, so a real farm sharing the Redis is not disturbed.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

from comfyfarm.producer.farm import Farm
from comfyfarm.tasks.routing import SHARED_QUEUE
from comfyfarm.tasks.settings import Settings


@dataclass(frozen=True)
class EnqueueBench:
    jobs: int
    seconds: float
    prompt_bytes: int
    queued_after: int

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else float("inf")

    def __str__(self) -> str:
        return (
            f"submit_many: {self.jobs} jobs ({self.prompt_bytes} B prompt each) in "
            f"{self.seconds:.3f} s = {self.rate:,.0f} jobs/s; queued: {self.queued_after}"
        )


def sample_prompt() -> dict[str, Any]:
    """An SD1.5 text-to-image prompt in API format (7 nodes, ~1.5 KB), like the demo's."""
    return {
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 1, "steps": 20, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
            "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple",
              "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
        "5": {"class_type": "EmptyLatentImage",
              "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {
            "text": "a photograph of an astronaut riding a horse on the moon, highly detailed",
            "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode",
              "inputs": {"text": "blurry, low quality, watermark", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage",
              "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }  # fmt: skip


def bench_enqueue(broker_url: str, *, count: int = 20_000, chunk_size: int = 500) -> EnqueueBench:
    """Submit ``count`` seed variations with ``submit_many`` and time it (building and validating
    the specs included). Cleans up its keys afterwards."""
    import json

    prefix = f"comfyfarm-bench-{uuid.uuid4().hex[:8]}:"
    settings = Settings(broker_url=broker_url, key_prefix=prefix)
    base = sample_prompt()
    prompts = []
    for seed in range(count):
        prompt = dict(base)
        prompt["3"] = {**base["3"], "inputs": {**base["3"]["inputs"], "seed": seed}}
        prompts.append(prompt)
    with Farm(settings) as farm:
        farm.submit_many(prompts[:10])  # connect and declare outside the timing
        started = time.perf_counter()
        farm.submit_many(prompts[10:], workflow_name="bench", chunk_size=chunk_size)
        seconds = time.perf_counter() - started
        depth = farm.queue_depths()[0].total
        _delete_prefix(farm, prefix)
    return EnqueueBench(count - 10, seconds, len(json.dumps(base)), depth)


def _delete_prefix(farm: Farm, prefix: str) -> None:
    keys = list(farm.redis.scan_iter(match=prefix + "*", count=1000))
    for start in range(0, len(keys), 1000):
        farm.redis.delete(*keys[start : start + 1000])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m comfyfarm_bench.enqueue_bench", description=__doc__
    )
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--broker-url", default=os.environ.get("COMFYFARM_BROKER_URL"))
    args = parser.parse_args(argv)
    if args.broker_url:
        print(bench_enqueue(args.broker_url, count=args.count, chunk_size=args.chunk))
        return 0
    from comfyfarm.services import RedisServer  # only for this stand-alone run

    with RedisServer() as server:
        print(bench_enqueue(server.url, count=args.count, chunk_size=args.chunk))
    print(f"(queue {SHARED_QUEUE!r} on an embedded Valkey, {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
