"""Reading docker-compose.yml the way ``docker compose config`` does, with or without Docker.

``resolved_config(env, overrides)`` runs ``docker compose config --format json`` when the Compose
plugin is installed; otherwise it loads the YAML (merge keys included), merges each override file
the way ``docker compose -f base -f override`` does (mappings merged key by key, ``command`` and
other scalars or sequences replaced, ``volumes`` merged by target) and applies Compose's variable
interpolation itself. The accessors accept both the short syntax of the file and the long syntax
``docker compose config`` prints, so the same checks run on either.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROFILES = ("gpu", "sim", "tools")

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class ComposeError(Exception):
    """Raised when the compose file does not resolve (e.g. a required variable is unset)."""

    def __init__(self, *, message: str) -> None:
        self.message = message
        super().__init__(message)


@functools.cache
def docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return probe.returncode == 0


def resolved_config(env: dict[str, str], overrides: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The whole file (every profile) plus ``overrides``, with ``env`` as the only variables set."""
    if docker_compose_available():
        return _docker_compose_config(env, overrides)
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    for override in overrides:
        raw = merge_files(raw, yaml.safe_load(override.read_text()))
    return {key: interpolate(value, env) for key, value in raw.items() if not key.startswith("x-")}


def merge_files(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Compose's merge of a second ``-f`` file into the first (the parts this repository uses)."""
    merged = dict(base)
    for key, value in override.items():
        if key == "services":
            services = dict(base.get("services") or {})
            for name, service in value.items():
                services[name] = _merge_service(services.get(name, {}), service)
            merged[key] = services
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = {**base[key], **value}
        else:
            merged[key] = value
    return merged


def _merge_service(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if key == "volumes" and key in base:
            by_target = {_volume_target(volume): volume for volume in base[key]}
            by_target |= {_volume_target(volume): volume for volume in value}
            merged[key] = list(by_target.values())
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = _deep_merge(base[key], value)
        else:
            merged[key] = value
    return merged


def _volume_target(volume: str | dict[str, Any]) -> str:
    """The container path of a mount, before interpolation (``${A:-x}:/path`` has two colons)."""
    if isinstance(volume, dict):
        return str(volume["target"])
    outside = re.sub(r"\$\{[^}]*\}", "VAR", volume)
    return outside.split(":")[1] if ":" in outside else outside


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = _deep_merge(base[key], value) if both else value
    return merged


def _docker_compose_config(env: dict[str, str], overrides: tuple[Path, ...]) -> dict[str, Any]:
    keep = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT")
    process_env = {k: v for k, v in os.environ.items() if k in keep} | env
    flags = [arg for profile in PROFILES for arg in ("--profile", profile)]
    files = [arg for path in (COMPOSE_FILE, *overrides) for arg in ("-f", str(path))]
    argv = ["docker", "compose", *files, *flags, "config", "--format", "json"]
    done = subprocess.run(
        argv, capture_output=True, text=True, env=process_env, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise ComposeError(message=done.stderr)
    config: dict[str, Any] = json.loads(done.stdout)
    return config


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``, ``$$`` on every
    string in ``value``."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value
    return _VARIABLE.sub(lambda match: _substitute(match, env), value)


def _substitute(match: re.Match[str], env: dict[str, str]) -> str:
    if match.group("escaped"):
        return "$"
    name = match.group("braced") or match.group("named")
    op, arg = match.group("op"), match.group("arg") or ""
    present = name in env
    set_and_nonempty = present and env[name] != ""
    if op in (":-", "-"):
        use_default = not set_and_nonempty if op == ":-" else not present
        return arg if use_default else env[name]
    if op in (":?", "?"):
        missing = not set_and_nonempty if op == ":?" else not present
        if missing:
            raise ComposeError(message=f"required variable {name} is missing a value: {arg}")
        return env[name]
    if op in (":+", "+"):
        replace = set_and_nonempty if op == ":+" else present
        return arg if replace else ""
    return env.get(name, "")


# -- accessors that accept the short and the long syntax --------------------------------------


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def ports_of(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host_ip, published, target) of every published port; host_ip "" means all interfaces."""
    ports = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            ports.append(
                (port.get("host_ip", ""), str(port.get("published", "")), str(port["target"]))
            )
            continue
        parts = str(port).split(":")
        if len(parts) == 3:
            ports.append((parts[0], parts[1], parts[2]))
        elif len(parts) == 2:
            ports.append(("", parts[0], parts[1]))
        else:
            ports.append(("", "", parts[0]))
    return ports


def mounts_of(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of every volume or bind mount."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            mounts.append((str(volume.get("source", "")), str(volume["target"])))
        else:
            source, target = str(volume).split(":")[:2]
            mounts.append((source, target))
    return mounts


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Service name → condition."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def duration_seconds(value: str | int | float) -> float:
    """A Compose duration ("60s", "1m30s", "1m0s") in seconds."""
    if isinstance(value, int | float):
        return float(value)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"not a duration: {value!r}"
    return sum(float(number) * units[unit] for number, unit in parts)
