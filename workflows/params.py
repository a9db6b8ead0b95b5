"""Named parameters: ``--param prompt="a cat"`` instead of node ids.

A workflow's parameters come from its sidecar, ``<name>.params.toml`` beside the workflow file::

    description = "SD1.5 text to image"

    [params.prompt]
    target = "6.text"                 # any --set address; or targets = ["6.text", "12.text"]
    help = "what to draw"

    [params.seed]
    target = "KSampler.seed"
    default = "random"                # applied when the parameter is not given

Without a sidecar the names are inferred from the prompt where that is unambiguous: ``prompt`` and
``negative`` follow the samplers' positive/negative links back through conditioning nodes to one
text input; ``seed``, ``steps``, ``cfg``, ``sampler``, ``scheduler``, ``denoise`` are the sampler's
(when there is one sampler); ``width``, ``height``, ``batch`` the latent's that the samplers start
from (else the one node that has them); ``checkpoint``,
``vae``, ``lora``, ``prefix``, ``image`` the one loader / save / upload input of that kind; and
every other input name that occurs on exactly one node is a parameter of its own name.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from comfyfarm.workflows.errors import WorkflowFormatError
from comfyfarm.workflows.schema import SchemaSource

SAMPLER_PARAMS: dict[str, tuple[str, ...]] = {
    "seed": ("seed", "noise_seed"),
    "steps": ("steps",),
    "cfg": ("cfg",),
    "sampler": ("sampler_name",),
    "scheduler": ("scheduler",),
    "denoise": ("denoise",),
}
LATENT_PARAMS: dict[str, tuple[str, ...]] = {
    "width": ("width",),
    "height": ("height",),
    "batch": ("batch_size",),
}
LOADER_PARAMS: dict[str, tuple[str, ...]] = {
    "checkpoint": ("ckpt_name",),
    "vae": ("vae_name",),
    "lora": ("lora_name",),
    "prefix": ("filename_prefix",),
}
TEXT_INPUTS = ("text", "text_g", "prompt", "string", "value", "text_l")
LOAD_IMAGE_TYPES = frozenset({"LoadImage", "LoadImageMask"})
_MAX_CHAIN = 16


@dataclass(frozen=True)
class ParamDef:
    """One named parameter: the inputs it sets, its default and its help text."""

    name: str
    targets: tuple[str, ...]  # --set addresses
    help: str = ""
    default: Any = None
    has_default: bool = False


@dataclass(frozen=True)
class ParamSet:
    """The parameters of one workflow and where they came from (a sidecar path or inference)."""

    params: Mapping[str, ParamDef]
    source: str  # "path/to/x.params.toml" or "inferred"
    description: str = ""

    def names(self) -> list[str]:
        return list(self.params)


def load_sidecar(path: Path) -> ParamSet:
    """Read a ``.params.toml`` sidecar (raises WorkflowFormatError naming the problem)."""
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorkflowFormatError(source=where, reason=exc.strerror or str(exc)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise WorkflowFormatError(source=where, reason=f"not valid TOML: {exc}") from exc
    unknown = set(data) - {"description", "params"}
    if unknown:
        raise WorkflowFormatError(source=where, reason=f"unknown top-level keys {sorted(unknown)}")
    table = data.get("params", {})
    if not isinstance(table, dict):
        raise WorkflowFormatError(source=where, reason="[params] must be a table")
    params: dict[str, ParamDef] = {}
    for name, entry in table.items():
        params[name] = _sidecar_param(where, name, entry)
    return ParamSet(params, where, str(data.get("description", "")))


def infer_params(prompt: Mapping[str, Any], schema: SchemaSource | None) -> ParamSet:
    """Parameters found in the prompt itself (see the module docstring)."""
    found: dict[str, ParamDef] = {}
    samplers = sorted(k for k, n in prompt.items() if _is_link(_inputs(n).get("positive")))
    samplers = [k for k in samplers if _is_link(_inputs(prompt[k]).get("negative"))]
    for name, role in (("prompt", "positive"), ("negative", "negative")):
        texts: set[str] = set()
        for sampler in samplers:
            texts |= _text_targets(prompt, _inputs(prompt[sampler])[role][0], set(), 0)
        if len(texts) == 1:
            found[name] = _inferred(prompt, name, texts.pop())
    if len(samplers) == 1:
        _take(prompt, found, SAMPLER_PARAMS, samplers)
    latents = {_latent_source(prompt, _inputs(prompt[k]).get("latent_image")) for k in samplers}
    if len(latents) == 1 and (latent := latents.pop()) is not None:
        _take(prompt, found, LATENT_PARAMS, [latent])
    everywhere = sorted(prompt)
    for table in (SAMPLER_PARAMS, LATENT_PARAMS, LOADER_PARAMS):
        _take(prompt, found, table, everywhere, unique=True)
    uploads = [
        f"{k}.{name}"
        for k in everywhere
        for name in _literals(prompt[k])
        if _is_upload(prompt[k], name, schema)
    ]
    if len(uploads) == 1 and "image" not in found:
        found["image"] = _inferred(prompt, "image", uploads[0])
    taken = {target for param in found.values() for target in param.targets}
    counts: dict[str, list[str]] = {}
    for node_id in everywhere:
        for name in _literals(prompt[node_id]):
            counts.setdefault(name, []).append(f"{node_id}.{name}")
    for name, targets in counts.items():
        if len(targets) == 1 and targets[0] not in taken and name not in found:
            found[name] = _inferred(prompt, name, targets[0])
    return ParamSet(found, "inferred")


def _sidecar_param(where: str, name: str, entry: Any) -> ParamDef:
    if not isinstance(entry, dict):
        raise WorkflowFormatError(source=where, reason=f"[params.{name}] must be a table")
    unknown = set(entry) - {"target", "targets", "help", "default"}
    if unknown:
        raise WorkflowFormatError(
            source=where, reason=f"[params.{name}] has unknown keys {sorted(unknown)}"
        )
    targets = entry.get("targets", [entry["target"]] if "target" in entry else [])
    if isinstance(targets, str):
        targets = [targets]
    if not targets or not all(isinstance(t, str) for t in targets):
        raise WorkflowFormatError(
            source=where, reason=f'[params.{name}] needs target = "NODE.INPUT" (or targets = [...])'
        )
    return ParamDef(
        name=name,
        targets=tuple(targets),
        help=str(entry.get("help", "")),
        default=entry.get("default"),
        has_default="default" in entry,
    )


def _take(
    prompt: Mapping[str, Any],
    found: dict[str, ParamDef],
    table: Mapping[str, tuple[str, ...]],
    nodes: list[str],
    *,
    unique: bool = False,
) -> None:
    for param, names in table.items():
        if param in found:
            continue
        hits = [f"{k}.{n}" for k in nodes for n in names if n in _literals(prompt[k])]
        if hits and (len(hits) == 1 or not unique):
            found[param] = _inferred(prompt, param, hits[0])


def _text_targets(prompt: Mapping[str, Any], node_id: Any, seen: set[str], depth: int) -> set[str]:
    """Text inputs that feed a conditioning chain ending at ``node_id``."""
    if (
        not isinstance(node_id, str)
        or node_id in seen
        or node_id not in prompt
        or depth > _MAX_CHAIN
    ):
        return set()
    seen.add(node_id)
    inputs = _inputs(prompt[node_id])
    for name in TEXT_INPUTS:
        value = inputs.get(name)
        if isinstance(value, str):
            return {f"{node_id}.{name}"}
        if _is_link(value):
            origin = prompt.get(value[0])
            literal = [n for n in TEXT_INPUTS if isinstance(_inputs(origin).get(n), str)]
            if literal:
                return {f"{value[0]}.{literal[0]}"}
    found: set[str] = set()
    for name, value in inputs.items():
        if _is_link(value) and ("cond" in name or name in ("positive", "negative")):
            found |= _text_targets(prompt, value[0], seen, depth + 1)
    return found


def _latent_source(prompt: Mapping[str, Any], link: Any) -> str | None:
    """The node that sets the latent's size, following ``samples``-like links back."""
    for _ in range(_MAX_CHAIN):
        if not _is_link(link) or link[0] not in prompt:
            return None
        node_id = link[0]
        inputs = _inputs(prompt[node_id])
        if "width" in _literals(prompt[node_id]) and "height" in _literals(prompt[node_id]):
            return str(node_id)
        link = next(
            (v for n, v in inputs.items() if _is_link(v) and ("latent" in n or n == "samples")),
            None,
        )
    return None


def _inferred(prompt: Mapping[str, Any], name: str, target: str) -> ParamDef:
    node = prompt[target.rsplit(".", 1)[0]]
    class_type = str(node.get("class_type"))
    title = _meta_title(node)
    where = f"{class_type} ({title})" if title and title != class_type else class_type
    return ParamDef(name=name, targets=(target,), help=where)


def _is_upload(node: Any, input_name: str, schema: SchemaSource | None) -> bool:
    class_type = node.get("class_type") if isinstance(node, dict) else None
    node_schema = schema.node(class_type) if schema and isinstance(class_type, str) else None
    if node_schema is not None:
        spec = node_schema.inputs.get(input_name)
        return spec is not None and spec.is_upload
    return class_type in LOAD_IMAGE_TYPES and input_name == "image"


def _literals(node: Any) -> dict[str, Any]:
    """Values set in the node, by input name; a name that a ``NODE.INPUT`` address cannot
    spell (empty, or with a dot: no ComfyUI input has one) names no parameter."""
    return {k: v for k, v in _inputs(node).items() if not _is_link(v) and k and "." not in k}


def _inputs(node: Any) -> dict[str, Any]:
    inputs = node.get("inputs") if isinstance(node, dict) else None
    return inputs if isinstance(inputs, dict) else {}


def _meta_title(node: Any) -> str:
    meta = node.get("_meta") if isinstance(node, dict) else None
    title = meta.get("title") if isinstance(meta, dict) else None
    return title if isinstance(title, str) else ""


def _is_link(value: Any) -> TypeGuard[list[Any]]:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )
