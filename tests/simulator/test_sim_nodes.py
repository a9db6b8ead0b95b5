"""Node classes beyond the recorded scenarios: outputs of every kind, img2img, previews, /free."""

from __future__ import annotations

import requests
from sim_kit import Recorder, history, new_id, seed_workflow, submit


def _run(url: str, recorder: Recorder, prompt: dict) -> str:
    prompt_id = submit(url, prompt, recorder.client_id)["prompt_id"]
    recorder.wait_done(prompt_id)
    return prompt_id


def _outputs(url: str, prompt_id: str) -> dict:
    entry = history(url, prompt_id)[prompt_id]
    assert entry["status"]["status_str"] == "success", entry["status"]
    return entry["outputs"]


def test_webp_audio_and_text_outputs(sim):
    """SaveAnimatedWEBP, SaveAudio and PreviewAny report images+animated, audio and text outputs."""
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 16, "height": 16, "batch_size": 3, "color": 9},
        },
        "2": {
            "class_type": "SaveAnimatedWEBP",
            "inputs": {
                "images": ["1", 0],
                "filename_prefix": "anim",
                "fps": 6.0,
                "lossless": True,
                "quality": 80,
                "method": "default",
            },
        },
        "3": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"},
        },
        "4": {"class_type": "EmptyLatentAudio", "inputs": {"seconds": 2.0, "batch_size": 1}},
        "5": {"class_type": "VAEDecodeAudio", "inputs": {"samples": ["4", 0], "vae": ["3", 2]}},
        "6": {
            "class_type": "SaveAudio",
            "inputs": {"audio": ["5", 0], "filename_prefix": "audio/clip"},
        },
        "7": {"class_type": "PrimitiveString", "inputs": {"value": "hello"}},
        "8": {"class_type": "PrimitiveInt", "inputs": {"value": 7}},
        "9": {
            "class_type": "StringConcatenate",
            "inputs": {"string_a": ["7", 0], "string_b": "world", "delimiter": " "},
        },
        "10": {"class_type": "PreviewAny", "inputs": {"source": ["9", 0]}},
        "11": {"class_type": "PreviewAny", "inputs": {"source": ["8", 0]}},
    }
    recorder = Recorder(sim.url, new_id())
    outputs = _outputs(sim.url, _run(sim.url, recorder, prompt))
    assert outputs["2"] == {
        "images": [{"filename": "anim_00001_.webp", "subfolder": "", "type": "output"}],
        "animated": [True],
    }
    assert outputs["6"] == {
        "audio": [{"filename": "clip_00001_.flac", "subfolder": "audio", "type": "output"}]
    }
    assert outputs["10"] == {"text": ["hello world"]} and outputs["11"] == {"text": ["7"]}
    webp = requests.get(f"{sim.url}/view", params=outputs["2"]["images"][0])
    assert webp.headers["Content-Type"] == "image/webp" and webp.content[8:12] == b"WEBP"
    flac = requests.get(f"{sim.url}/view", params=outputs["6"]["audio"][0])
    assert flac.content[:4] == b"fLaC"


def test_img2img_with_lora_uses_uploaded_size(start_sim):
    """LoadImage -> VAEEncode -> KSampler -> VAEDecode keeps the uploaded picture's size."""
    from comfyfarm.simulator.images import encode_png

    sim = start_sim("--step-ms", "1", "--models", "loras=detail.safetensors")
    upload = requests.post(
        f"{sim.url}/upload/image",
        files={"image": ("in.png", encode_png(24, 40, (1, 1, 1), (2, 2, 2)))},
    )
    assert upload.json()["name"] == "in.png"
    prompt = seed_workflow()
    prompt["11"] = {"class_type": "LoadImage", "inputs": {"image": "in.png"}}
    prompt["12"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["11", 0], "vae": ["10", 0]}}
    prompt["13"] = {
        "class_type": "LoraLoader",
        "inputs": {
            "model": ["4", 0],
            "clip": ["4", 1],
            "lora_name": "detail.safetensors",
            "strength_model": 0.8,
            "strength_clip": 1.0,
        },
    }
    prompt["3"]["inputs"].update(latent_image=["12", 0], model=["13", 0], denoise=0.6)
    recorder = Recorder(sim.url, new_id())
    (image,) = _outputs(sim.url, _run(sim.url, recorder, prompt))["9"]["images"]
    data = requests.get(f"{sim.url}/view", params=image).content
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (24, 40)


def test_images_are_deterministic_in_the_seed(start_sim):
    """The same seed gives the same bytes on another simulator; another seed gives other pixels."""
    pictures = []
    for seed in (1, 1, 2):
        sim = start_sim("--step-ms", "0", "--load-ms", "0")
        prompt = seed_workflow()
        prompt["3"]["inputs"]["seed"] = seed
        prompt["5"]["inputs"].update(width=64, height=32, batch_size=2)
        recorder = Recorder(sim.url, new_id())
        images = _outputs(sim.url, _run(sim.url, recorder, prompt))["9"]["images"]
        assert len(images) == 2
        pictures.append(requests.get(f"{sim.url}/view", params=images[0]).content)
    assert pictures[0] == pictures[1]
    assert pictures[0] != pictures[2]


def test_sampler_previews_follow_feature_flags(start_sim):
    """--previews sends a preview per step: type 1 after progress, type 4 before it with flags."""
    sim = start_sim("--previews", "--step-ms", "1")
    prompt = seed_workflow()
    prompt["3"]["inputs"]["steps"] = 3
    plain = Recorder(sim.url, new_id())
    _run(sim.url, plain, prompt)
    step = ["progress_state", "progress", "<binary PREVIEW_IMAGE>"]
    types = plain.types()
    start = types.index("progress") - 1
    assert types[start : start + 9] == step * 3
    flagged = Recorder(sim.url, new_id(), feature_flags=True)
    flagged.wait_message("feature_flags")
    prompt["3"]["inputs"]["seed"] = 5
    _run(sim.url, flagged, prompt)
    types = flagged.types()
    start = types.index("<binary PREVIEW_IMAGE_WITH_METADATA>") - 1
    assert types[start : start + 3] == [
        "progress_state",
        "<binary PREVIEW_IMAGE_WITH_METADATA>",
        "progress",
    ]


def test_free_memory_drops_the_cache(sim):
    """POST /free with free_memory makes an identical prompt execute again."""
    recorder = Recorder(sim.url, new_id())
    prompt = seed_workflow()
    _run(sim.url, recorder, prompt)
    requests.post(f"{sim.url}/free", json={"free_memory": True})
    again = _run(sim.url, recorder, prompt)
    assert recorder.wait_message("execution_cached", prompt_id=again)["data"]["nodes"] == []


def test_progress_is_broadcast_without_client_id(sim):
    """A prompt without client_id: progress_state and progress reach every socket, nothing else."""
    watcher = Recorder(sim.url, new_id())
    watcher.wait_message("status")
    prompt = seed_workflow()
    prompt["3"]["inputs"]["steps"] = 2
    submit(sim.url, prompt)
    watcher.wait_for(
        lambda frames: sum(1 for f in frames if isinstance(f, dict) and f["type"] == "status") == 4
    )
    assert set(watcher.types()) == {"status", "progress_state", "progress"}
