"""Model folders: which ``models/<folder>`` a loader input reads, so a fix can say where to go.

ComfyUI's combo lists for loader inputs *are* its model lists (empty on a server without models),
so "value not in list" on such an input means "model file missing". This module only knows the
folder names; ``SchemaSource.models`` may carry the actual ``/models/{folder}`` lists.
"""

from __future__ import annotations

from comfyfarm.workflows.schema import InputSpec, SchemaSource

MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")
# What a worker downloads into its models/ folder when a workflow names a model by URL.
DOWNLOADABLE_MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf")

# (class_type, input_name) wins over input_name alone.
_BY_CLASS: dict[tuple[str, str], str] = {
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("unCLIPCheckpointLoader", "ckpt_name"): "checkpoints",
    ("ImageOnlyCheckpointLoader", "ckpt_name"): "checkpoints",
    ("DiffControlNetLoader", "control_net_name"): "controlnet",
}
_BY_INPUT: dict[str, str] = {
    "ckpt_name": "checkpoints",
    "vae_name": "vae",
    "lora_name": "loras",
    "control_net_name": "controlnet",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "clip_name3": "text_encoders",
    "unet_name": "diffusion_models",
    "style_model_name": "style_models",
    "gligen_name": "gligen",
    "hypernetwork_name": "hypernetworks",
    "photomaker_model_name": "photomaker",
    "audio_encoder_name": "audio_encoders",
    "model_patch_name": "model_patches",
    "config_name": "configs",
}


def folder_of_input(class_type: str, input_name: str) -> str | None:
    """The ``models/`` folder a known loader input reads from (no schema needed)."""
    return _BY_CLASS.get((class_type, input_name)) or _BY_INPUT.get(input_name)


def model_folder(class_type: str, spec: InputSpec, value: object) -> str | None:
    """The ``models/`` folder this input reads from, or None when it is not a model input."""
    folder = folder_of_input(class_type, spec.name)
    if folder:
        return folder
    if spec.type == "COMBO" and isinstance(value, str) and value.lower().endswith(MODEL_EXTENSIONS):
        return "the matching models/ folder"
    return None


def known_models(schema: SchemaSource, folder: str) -> list[str]:
    """The files ``/models/{folder}`` listed, or ``[]`` when the schema source has no such list."""
    return list(schema.models.get(folder, []))
