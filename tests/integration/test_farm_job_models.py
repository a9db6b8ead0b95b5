"""A job's ``models`` list through a real worker and a simulator listing its models folder:
fetched once before the prompt, under the name the job gives, verified by BLAKE3."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

from farm_kit import WorkerFactory, blake3_of
from local_http import always, serve

from comfyfarm.producer import Farm

WEIGHTS = b"\x02lora-weights" * 2048


def prompt_with_checkpoint(ckpt: str, seed: int) -> dict[str, Any]:
    library = resources.files("comfyfarm.workflows") / "library" / "sd15_text2image.api.json"
    prompt = copy.deepcopy(json.loads(library.read_text()))
    prompt["4"]["inputs"]["ckpt_name"] = ckpt
    prompt["3"]["inputs"]["seed"] = seed
    return dict(prompt)


def test_a_jobs_models_are_fetched_once_before_its_prompt(
    workers: WorkerFactory, start_sim: Any, farm: Farm, tmp_path: Path
) -> None:
    """Two jobs list the same checkpoint {folder, name, url, blake3}: one download, saved as
    the given name, and both prompts (which name it) succeed; a wrong hash fails the job
    naming models[0]."""
    models = tmp_path / "models"
    vae = "vae=vae-ft-mse-840000-ema-pruned.safetensors"
    sim = start_sim("--step-ms", "1", "--load-ms", "0", "--no-models", "--models-dir",
                    str(models), "--models", vae)  # fmt: skip
    workers.start(sim, args=("--models-dir", str(models)),
                  env={"COMFYFARM_INPUT_ALLOW": "127.0.0.1"})  # fmt: skip
    with serve(always(WEIGHTS)) as served:
        entry = {
            "folder": "checkpoints", "name": "given-name.safetensors",
            "url": f"{served.base}/blob/abc", "blake3": blake3_of(WEIGHTS).removeprefix("blake3:"),
        }  # fmt: skip
        jobs = [
            farm.submit(prompt_with_checkpoint("given-name.safetensors", seed), models=[entry])
            for seed in range(2)
        ]
        for job in jobs:
            result = job.wait(60)
            assert result.status == "succeeded", result.error
        assert served.paths == ["/blob/abc"]
        assert (models / "checkpoints" / "given-name.safetensors").read_bytes() == WEIGHTS
        wrong = {**entry, "name": "other.safetensors", "blake3": "0" * 64}
        failed = farm.submit(prompt_with_checkpoint("given-name.safetensors", 9), models=[wrong])
        result = failed.wait(60)
    assert result.status == "failed" and result.error is not None
    assert "models[0]" in result.error["message"], result.error
    assert not (models / "checkpoints" / "other.safetensors").exists()
