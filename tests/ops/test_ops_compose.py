"""docker-compose.yml, Dockerfile and .dockerignore checked against the farm they deploy.

The compose file is resolved by ``docker compose config`` when the Compose plugin exists, else by
compose_kit (YAML + Compose interpolation); every service command is parsed by comfyfarm's own
argparse parsers. No container engine is needed.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import re
import tomllib
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from compose_kit import (
    COMPOSE_FILE,
    ROOT,
    ComposeError,
    command_of,
    depends_on,
    duration_seconds,
    environment_of,
    mounts_of,
    ports_of,
    resolved_config,
)

from comfyfarm.cli import COMMANDS
from comfyfarm.commands.flower import FlowerRefused, flower_argv
from comfyfarm.tasks.app import SOFT_SHUTDOWN_SECONDS
from comfyfarm.tasks.binding import is_loopback
from comfyfarm.tasks.settings import Settings

ENV = {"REDIS_PASSWORD": "compose-redis-pw-1f2e", "FLOWER_BASIC_AUTH": "admin:compose-flower-pw"}
COMFYUI_PORT = 8188


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return resolved_config(dict(ENV))


@pytest.fixture(scope="module")
def services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = config["services"]
    return found


def farm_image(service: dict[str, Any]) -> bool:
    """Built from this repository's Dockerfile (the comfyfarm image)."""
    return "build" in service


def parse_cli(command: list[str]) -> tuple[str, argparse.Namespace]:
    """Parse a container command with the parser ``comfyfarm COMMAND`` would use."""
    name, *rest = command
    assert name in COMMANDS, f"{name!r} is not a comfyfarm command"
    parser = argparse.ArgumentParser(prog=f"comfyfarm {name}", exit_on_error=False)
    importlib.import_module(f"comfyfarm.commands.{name}").configure(parser)
    try:
        return name, parser.parse_args(rest)
    except SystemExit as exc:  # argparse exits on unknown arguments even with exit_on_error=False
        raise AssertionError(f"comfyfarm rejects {command}") from exc


def pairs(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """worker-X service → the ComfyUI service its --comfy-url names."""
    found = {}
    for name, service in services.items():
        if name.startswith("worker-"):
            _, args = parse_cli(command_of(service))
            found[name] = urlsplit(args.comfy_url).hostname or ""
    return found


# -- resolution and secrets -------------------------------------------------------------------


def test_compose_resolves_with_the_required_variables(services: dict[str, Any]) -> None:
    """With REDIS_PASSWORD and FLOWER_BASIC_AUTH set, every service of every profile resolves."""
    expected = {"redis", "flower", "cli", "comfyui-gpu0", "worker-gpu0", "comfyui-sim0",
                "worker-sim0", "comfyui-sim1", "worker-sim1"}  # fmt: skip
    assert expected <= set(services)


@pytest.mark.parametrize("variable", sorted(ENV))
def test_compose_refuses_to_resolve_without_a_secret(variable: str) -> None:
    """Leaving a secret unset stops Compose with a message naming the variable."""
    env = {key: value for key, value in ENV.items() if key != variable}
    with pytest.raises(ComposeError) as caught:
        resolved_config(env)
    assert variable in caught.value.message


def test_no_secret_is_hard_coded() -> None:
    """Every password comes from a required variable; optional secrets have no default."""
    text = COMPOSE_FILE.read_text()
    for match in re.finditer(r"rediss?://([^@\s]*)@", text):
        assert match.group(1).startswith(":${REDIS_PASSWORD:?"), match.group(0)
    assert "--requirepass" not in text  # the password is redis config on stdin, not argv
    raw = yaml.safe_load(text)
    blocks = [raw[key] for key in raw if key.startswith("x-") and isinstance(raw[key], dict)]
    blocks += [service.get("environment") or {} for service in raw["services"].values()]
    envs = [block.get("environment", block) for block in blocks]
    for env in envs:
        for key, value in (env or {}).items():
            if re.search(r"PASSWORD|BASIC_AUTH|REDISCLI_AUTH", key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", str(value)), (key, value)
            elif re.search(r"SECRET|TOKEN", key):
                assert re.fullmatch(r"\$\{\w+:(\?[^}]+|-)\}", str(value)), (key, value)


def test_broker_urls_carry_the_password_and_are_valid_settings(
    services: dict[str, dict[str, Any]],
) -> None:
    """Every farm service's COMFYFARM_* variables are valid Settings, authenticated to redis."""
    for name, service in services.items():
        if not farm_image(service) or name.startswith("comfyui-sim"):
            continue
        env = environment_of(service)
        settings = Settings.from_env(env)
        for url in (settings.broker_url, settings.result_backend):
            parts = urlsplit(url)
            assert parts.hostname == "redis" and parts.password == ENV["REDIS_PASSWORD"], name
        assert settings.broker_url != settings.result_backend  # separate databases
        assert ENV["REDIS_PASSWORD"] not in repr(settings)


# -- redis and flower ---------------------------------------------------------------------------


def test_redis_persists_with_aof_and_requires_the_password(
    services: dict[str, dict[str, Any]],
) -> None:
    """Redis runs with appendonly, noeviction and the password from the environment, unpublished."""
    redis = services["redis"]
    shell, flag, script = command_of(redis)
    assert (shell, flag) == ("sh", "-c")
    argv_line, config = script.split("<<EOF\n", 1)
    options = dict(zip(argv_line.split()[3::2], argv_line.split()[4::2], strict=False))
    assert argv_line.split()[:3] == ["exec", "redis-server", "-"]  # config from stdin
    assert options["--appendonly"] == "yes"
    assert options["--maxmemory-policy"] == "noeviction"
    assert "requirepass" not in argv_line and "$REDIS_PASSWORD" not in argv_line
    assert config.splitlines()[0] == "requirepass $REDIS_PASSWORD"
    assert environment_of(redis)["REDIS_PASSWORD"] == ENV["REDIS_PASSWORD"]
    assert ("redis-data", "/data") in mounts_of(redis)
    assert not ports_of(redis)
    probe = " ".join(redis["healthcheck"]["test"])
    assert "ping" in probe and ENV["REDIS_PASSWORD"] not in probe


def test_flower_needs_basic_auth_and_is_published_on_loopback_only(
    services: dict[str, dict[str, Any]],
) -> None:
    """Flower gets the credentials, listens on all container interfaces, the host only on
    127.0.0.1."""
    flower = services["flower"]
    auth = environment_of(flower)["COMFYFARM_FLOWER_BASIC_AUTH"]
    assert auth == ENV["FLOWER_BASIC_AUTH"]
    name, args = parse_cli(command_of(flower))
    assert name == "flower"
    # Inside a container a loopback bind would be unreachable through the published port.
    assert not is_loopback(args.address)
    assert f"--basic-auth={auth}" in flower_argv(args, auth)
    with pytest.raises(FlowerRefused):
        flower_argv(args, None)
    ports = ports_of(flower)
    assert ports and all(host_ip == "127.0.0.1" for host_ip, _, _ in ports)
    assert {target for _, _, target in ports} == {str(args.port)}
    assert "/healthcheck" in " ".join(flower["healthcheck"]["test"])


# -- workers and their ComfyUIs -----------------------------------------------------------------


def test_every_farm_command_is_valid_for_the_cli(services: dict[str, dict[str, Any]]) -> None:
    """Each service of the comfyfarm image runs a command comfyfarm's parsers accept."""
    farm_services = [name for name, service in services.items() if farm_image(service)]
    assert {"flower", "cli", "worker-gpu0", "comfyui-sim0"} <= set(farm_services)
    for name in farm_services:
        parse_cli(command_of(services[name]))


def test_each_worker_is_paired_with_its_own_comfyui(services: dict[str, dict[str, Any]]) -> None:
    """worker-X feeds comfyui-X (same profile, right port, started first); no ComfyUI is shared."""
    paired = pairs(services)
    assert paired, "no worker services"
    for worker_name, comfy_name in paired.items():
        suffix = worker_name.removeprefix("worker-")
        assert comfy_name == f"comfyui-{suffix}", worker_name
        worker, comfy = services[worker_name], services[comfy_name]
        assert worker["profiles"] == comfy["profiles"], worker_name
        _, args = parse_cli(command_of(worker))
        assert urlsplit(args.comfy_url).port == listening_port(comfy), worker_name
        assert args.name == suffix
        assert set(depends_on(worker)) == {"redis", comfy_name}
        assert depends_on(worker)["redis"] == "service_healthy"
    assert len(set(paired.values())) == len(paired), "two workers share a ComfyUI"
    comfyuis = {name for name in services if name.startswith("comfyui-")}
    assert comfyuis == set(paired.values()), "a ComfyUI without a worker"


def listening_port(comfy: dict[str, Any]) -> int:
    if farm_image(comfy):  # the simulator
        _, args = parse_cli(command_of(comfy))
        return int(args.port)
    return COMFYUI_PORT


def test_workers_share_one_output_volume(config: dict[str, Any]) -> None:
    """Every worker (and the CLI) mounts one named volume where COMFYFARM_STORAGE_URL points."""
    services = config["services"]
    readers = [name for name in services if name.startswith("worker-")] + ["cli"]
    sources = set()
    for name in readers:
        storage = urlsplit(environment_of(services[name])["COMFYFARM_STORAGE_URL"])
        assert storage.scheme == "file", name
        mounted = [source for source, target in mounts_of(services[name]) if target == storage.path]
        assert len(mounted) == 1, name
        sources.add(mounted[0])
    assert len(sources) == 1
    assert sources.pop() in (config.get("volumes") or {})


def test_workers_hand_back_their_job_on_docker_stop(services: dict[str, dict[str, Any]]) -> None:
    """SIGTERM is remapped to a soft shutdown, and Docker waits longer than it takes."""
    for name, service in services.items():
        if name.startswith("worker-"):
            assert environment_of(service)["REMAP_SIGTERM"] == "SIGQUIT", name
            assert duration_seconds(service["stop_grace_period"]) > SOFT_SHUTDOWN_SECONDS + 10


def test_gpu_comfyuis_each_reserve_their_own_gpu(services: dict[str, dict[str, Any]]) -> None:
    """comfyui-gpu* run a ComfyUI image in profile gpu, one NVIDIA device each, models mounted."""
    gpu_services = {name: s for name, s in services.items() if name.startswith("comfyui-gpu")}
    assert gpu_services
    device_ids: list[str] = []
    for name, service in gpu_services.items():
        assert service["profiles"] == ["gpu"], name
        assert not farm_image(service) and "comfyui" in service["image"], name
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert len(devices) == 1 and devices[0]["driver"] == "nvidia", name
        assert "gpu" in devices[0]["capabilities"], name
        device_ids += devices[0]["device_ids"]
        assert any(target.endswith("/models") for _, target in mounts_of(service)), name
        assert not ports_of(service), f"{name}: ComfyUI has no auth, keep it unpublished"
    assert len(device_ids) == len(set(device_ids)), "two ComfyUIs on one GPU"


def test_comfyui_image_and_models_come_from_the_environment() -> None:
    """COMFYUI_IMAGE and COMFYUI_MODELS replace the defaults."""
    env = dict(ENV, COMFYUI_IMAGE="registry.example/my-comfyui:1", COMFYUI_MODELS="/srv/models")
    comfy = resolved_config(env)["services"]["comfyui-gpu0"]
    assert comfy["image"] == "registry.example/my-comfyui:1"
    assert "/srv/models" in {source for source, _ in mounts_of(comfy)}


def test_sim_profile_runs_the_simulator_without_gpus(services: dict[str, dict[str, Any]]) -> None:
    """comfyui-sim* run `comfyfarm sim` on all interfaces, in profile sim, with no GPU."""
    sims = {name: s for name, s in services.items() if name.startswith("comfyui-sim")}
    assert len(sims) >= 2
    for name, service in sims.items():
        assert service["profiles"] == ["sim"], name
        command, args = parse_cli(command_of(service))
        assert command == "sim" and args.host == "0.0.0.0", name
        assert "deploy" not in service, name


# -- Dockerfile and .dockerignore ----------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for parts in (line.strip().split(None, 1) for line in joined.splitlines() if line.strip())
    ]


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def copied_sources() -> list[list[str]]:
    """The sources of each COPY (all words but the destination)."""
    return [args.split()[:-1] for instruction, args in dockerfile() if instruction == "COPY"]


def test_dockerfile_copies_every_package_and_the_metadata() -> None:
    """Every package setuptools installs is copied, and every COPY source exists."""
    sources = {source for group in copied_sources() for source in group}
    find = pyproject()["tool"]["setuptools"]["packages"]["find"]
    packages = {name.rstrip("*") for name in find["include"]}
    # comfyfarm/<part> are symlinks to top-level folders: those must be copied too
    parts = {link.resolve().name for link in (ROOT / "comfyfarm").iterdir() if link.is_symlink()}
    assert parts >= {"tasks", "producer", "worker", "comfy", "storage", "workflows", "simulator"}
    assert packages | parts | {"pyproject.toml", "README.md"} <= sources
    for source in sources:
        assert (ROOT / source).exists(), source


def test_dockerfile_base_image_matches_requires_python() -> None:
    """The base is an official Python image at least as new as requires-python."""
    base = next(args for instruction, args in dockerfile() if instruction == "FROM")
    match = re.fullmatch(r"python:(\d+)\.(\d+)(-slim)?", base)
    assert match, base
    minimum = re.search(r">=\s*(\d+)\.(\d+)", pyproject()["project"]["requires-python"])
    assert minimum
    assert (int(match[1]), int(match[2])) >= (int(minimum[1]), int(minimum[2]))


def test_dockerfile_installs_the_role_extras_and_runs_as_a_user_owning_the_output() -> None:
    """pip installs the worker, sim, flower and s3 extras; a non-root user owns /output; the
    entrypoint is comfyfarm."""
    steps = dockerfile()
    runs = " ".join(args for instruction, args in steps if instruction == "RUN")
    roles = re.search(r"for e in \(([^)]*)\)", runs)
    assert roles, "the Dockerfile names the extras it installs"
    assert {"worker", "sim", "flower", "s3"} <= set(re.findall(r"'(\w+)'", roles[1]))
    users = [args for instruction, args in steps if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert re.search(rf"chown {users[-1]}(:\w+)? /output", runs)
    assert ("ENTRYPOINT", '["comfyfarm"]') in steps
    env = " ".join(args for instruction, args in steps if instruction == "ENV")
    assert "PYTHONUNBUFFERED=1" in env  # logs reach `docker logs` as they happen


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: a pattern matching a path or one of its parent directories
    excludes it; ``**/`` matches at any depth; the last matching pattern (``!`` negates) wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for raw in patterns:
        pattern = raw.lstrip("!").rstrip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        else:
            hit = any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes)
        if hit:
            result = not raw.startswith("!")
    return result


def test_dockerignore_keeps_secrets_caches_and_outputs_out_of_the_context() -> None:
    """.venv, .git, .env, tests, caches, models and outputs never reach the build context."""
    patterns = dockerignore()
    for path in (".venv", ".git", ".env", "tests/ops/test_ops_compose.py", "models/x.safetensors",
                 "worker/__pycache__/task.cpython-311.pyc", ".pytest_cache", ".mypy_cache",
                 ".ruff_cache", "comfyfarm-output/job/9_0.png", "comfyfarm.egg-info"):  # fmt: skip
        assert ignored(path, patterns), path


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    """Nothing a COPY needs is ignored."""
    patterns = dockerignore()
    for group in copied_sources():
        for source in group:
            assert not ignored(source, patterns), source
            for file in (ROOT / source).rglob("*.py") if (ROOT / source).is_dir() else []:
                relative = file.relative_to(ROOT).as_posix()
                assert not ignored(relative, patterns), relative
