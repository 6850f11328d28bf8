"""Deployment files: Dockerfile, .dockerignore, compose.yaml and deploy/kubernetes/.

The static tests parse each file and hold it to what the server really accepts and serves:
``TRIO_MOCK_*`` names against ``KNOBS``, values through ``Settings.from_env``, probe and
scrape paths through the app, grace periods against the graceful timeout. Kubernetes
objects validate against the OpenAPI schemas that ``kubernetes-validate`` bundles (no
network). One test installs the project as the Dockerfile's build stage sees it, runs the
ENTRYPOINT with the Dockerfile's ENV on loopback, runs its HEALTHCHECK, then its STOPSIGNAL.

``DEPLOY_FILES_ROOT`` points every test at another copy of the project (mutation tests).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import trio
import yaml

from helpers import free_port
from trio_mock import Settings, create_app
from trio_mock._config._knobs import ENV_PREFIX, SettingsError
from trio_mock._config._settings import KNOBS

ROOT = Path(os.environ.get("DEPLOY_FILES_ROOT") or Path(__file__).resolve().parents[1])
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "compose.yaml"
KUBE = ROOT / "deploy" / "kubernetes"

OLDEST_KUBERNETES = "1.30"  # the manifests promise to work from this release on...
NEWEST_KUBERNETES = ".".join(kubernetes_validate.latest_version().split(".")[:2])  # ...to this
NAME_LABEL = {"app.kubernetes.io/name": "trio-mock"}
ENV_NAMES = {k.env for k in KNOBS.values()} | {ENV_PREFIX + "CONFIG"}
# Beyond preStop sleep + graceful drain: the signal, cancelling what is left, process exit.
SHUTDOWN_MARGIN_S = 3.0
DOCKER_STOP_TIMEOUT_S = 10  # `docker stop` sends SIGKILL after this by default
INSTALL_TIMEOUT_S = 300  # a cold cache downloads numpy, tiktoken and the rest from PyPI
START_TIMEOUT_S = 30


def load_docs(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document in ``path``; each must be a mapping."""
    docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a document is not a mapping: {doc!r}"
    return docs


def yaml_files() -> list[Path]:
    return sorted([COMPOSE, *(ROOT / "deploy").rglob("*.yaml"), *(ROOT / "deploy").rglob("*.yml")])


@cache
def kube_objects() -> dict[str, dict[str, Any]]:
    """The objects under deploy/kubernetes (not the kustomization), by kind."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBE.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_docs(path):
            assert doc["kind"] not in objects, f"two {doc['kind']} objects"
            objects[doc["kind"]] = doc
    return objects


def kustomization() -> dict[str, Any]:
    (doc,) = load_docs(KUBE / "kustomization.yaml")
    return doc


def container() -> dict[str, Any]:
    """The Deployment's one container."""
    (only,) = kube_objects()["Deployment"]["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = only
    return result


def pod_labels() -> dict[str, str]:
    labels: dict[str, str] = kube_objects()["Deployment"]["spec"]["template"]["metadata"]["labels"]
    return labels


def subset(small: Mapping[str, str], big: Mapping[str, str]) -> bool:
    return all(big.get(k) == v for k, v in small.items())


# --- the Dockerfile, parsed ------------------------------------------------------------------


class Instruction(NamedTuple):
    stage: int  # 0 for the first FROM and what follows it, 1 for the second, ...
    keyword: str  # upper case
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    r"""Instructions with continued lines joined and comments dropped (escape character ``\``).

    As in BuildKit, comment and blank lines inside a continued instruction are skipped.
    """
    instructions: list[Instruction] = []
    stage, pending = -1, ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(stage, keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends in a continued line"
    return instructions


@cache
def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def stage(index: int) -> list[Instruction]:
    """One stage's instructions; -1 is the final stage, the image that runs."""
    stages = sorted({i.stage for i in dockerfile()})
    return [i for i in dockerfile() if i.stage == stages[index]]


def only(instructions: Sequence[Instruction], keyword: str) -> str:
    """The arguments of the last ``keyword`` instruction (it must exist), as Docker uses."""
    found = [i.args for i in instructions if i.keyword == keyword]
    assert found, f"no {keyword} in the stage"
    return found[-1]


def exec_form(args: str) -> list[str]:
    """A JSON-array argument (ENTRYPOINT, CMD): a shell form would keep signals from PID 1."""
    assert args.startswith("["), f"not in exec form: {args}"
    command = json.loads(args)
    assert isinstance(command, list), command
    assert all(isinstance(part, str) for part in command), command
    return command


def env_of(instructions: Sequence[Instruction]) -> dict[str, str]:
    """The stage's ENV, in either spelling (``ENV A=1 B=2`` or ``ENV A 1``)."""
    env: dict[str, str] = {}
    for i in instructions:
        if i.keyword != "ENV":
            continue
        words = shlex.split(i.args)
        if "=" not in words[0]:  # the legacy one-variable form
            env[words[0]] = i.args.split(None, 1)[1]
            continue
        for word in words:
            name, sep, value = word.partition("=")
            assert sep, f"ENV mixes its two forms: {i.args}"
            env[name] = value
    return env


def healthcheck() -> tuple[dict[str, str], list[str]]:
    """The final stage's HEALTHCHECK: its ``--options`` and its command as an argv."""
    match = re.fullmatch(r"((?:--\S+\s+)*)CMD\s+(.+)", only(stage(-1), "HEALTHCHECK"))
    assert match, "HEALTHCHECK must be [--options] CMD command"
    options = dict(o.removeprefix("--").partition("=")[::2] for o in match[1].split())
    command = match[2]
    argv = exec_form(command) if command.startswith("[") else ["/bin/sh", "-c", command]
    return options, argv


def user_id() -> int:
    user = only(stage(-1), "USER").partition(":")[0]
    assert user.isdigit(), f"USER {user}: use a numeric UID, so runAsNonRoot can check it"
    return int(user)


def container_env() -> dict[str, str]:
    """What the running image sees: the final stage's ENV."""
    return env_of(stage(-1))


def duration_s(text: str) -> float:
    """A compose duration ("1m30s", "15s", "500ms") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    assert parts, f"not a duration: {text!r}"
    assert "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def ignore_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern: ``**`` any depth, ``*`` and ``?`` within one path element."""
    parts = re.split(r"(\*\*/?|\*|\?|\[[^]]*\])", pattern.strip("/"))
    out = []
    for part in parts:
        if part.startswith("**"):
            out.append("(?:.*/)?" if part.endswith("/") else ".*")
        elif part == "*":
            out.append("[^/]*")
        elif part == "?":
            out.append("[^/]")
        elif part.startswith("["):
            out.append(part)
        else:
            out.append(re.escape(part))
    return re.compile("".join(out))


def docker_ignores(relative: str, patterns: Sequence[str]) -> bool:
    """Whether .dockerignore keeps ``relative`` out of the context: the last match wins, and
    a pattern matching a parent directory matches everything in it."""
    parts = PurePosixPath(relative).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = ignore_regex(pattern.removeprefix("!"))
        if any(regex.fullmatch(p) for p in prefixes):
            ignored = not negated
    return ignored


# --- YAML and Kubernetes schemas ----------------------------------------------------------------


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path: Path) -> None:
    assert load_docs(path), f"{path} holds no document"


def test_expected_files_exist() -> None:
    for name in ("Dockerfile", ".dockerignore", "compose.yaml", "deploy/README.md"):
        assert (ROOT / name).is_file(), name
    assert set(kube_objects()) == {
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceMonitor",
    }


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, NEWEST_KUBERNETES])
@pytest.mark.parametrize(
    "kind", ["ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"]
)
def test_object_matches_kubernetes_schema(kind: str, version: str) -> None:
    obj = kube_objects()[kind]
    try:  # strict: unknown fields (a typo, a misplaced key) fail too
        validated = kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(map(str, error.path))
        pytest.fail(f"{kind} at {where} (Kubernetes {version}): {error.message}")
    except kubernetes_validate.SchemaNotFoundError as error:  # e.g. an API version removed
        pytest.fail(error.message)
    assert validated == version
    assert subset(NAME_LABEL, obj["metadata"]["labels"])
    assert obj["metadata"]["name"] == "trio-mock"


def test_kustomization_lists_the_manifests() -> None:
    doc = kustomization()
    assert doc["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert doc["kind"] == "Kustomization"
    resources = doc["resources"]
    assert len(resources) == len(set(resources))
    for name in resources:
        assert (KUBE / name).is_file(), f"kustomization lists missing {name}"
    manifests = {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml"}
    # The ServiceMonitor needs the Prometheus Operator's CRD: opt-in, and said so.
    assert set(resources) == manifests - {"servicemonitor.yaml"}
    assert "servicemonitor.yaml" in (KUBE / "kustomization.yaml").read_text(encoding="utf-8")
    images = {image["name"] for image in doc.get("images", [])}
    assert images <= {container()["image"].partition(":")[0]}


def test_service_and_friends_select_the_pods() -> None:
    objects = kube_objects()
    deployment, service = objects["Deployment"], objects["Service"]
    assert subset(NAME_LABEL, pod_labels())
    assert subset(deployment["spec"]["selector"]["matchLabels"], pod_labels())
    assert subset(service["spec"]["selector"], pod_labels())
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    pdb = objects["PodDisruptionBudget"]["spec"]
    assert subset(pdb["selector"]["matchLabels"], pod_labels())
    hpa = objects["HorizontalPodAutoscaler"]["spec"]
    target = hpa["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        "Deployment",
        deployment["metadata"]["name"],
    )
    cpu = [m["resource"] for m in hpa["metrics"] if m["type"] == "Resource"]
    assert [(r["name"], r["target"]["type"]) for r in cpu] == [("cpu", "Utilization")]
    assert deployment["spec"]["replicas"] == 2
    # A drain must be able to evict a pod: the budget leaves at least one to take.
    assert pdb["minAvailable"] < min(deployment["spec"]["replicas"], hpa["minReplicas"])
    assert hpa["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["maxReplicas"]


# --- settings: names are knobs, values parse, the server listens where it is reached --------------


def kube_env() -> dict[str, str]:
    """The container's TRIO_MOCK_* settings in the pod: image ENV < envFrom < env."""
    env = container_env()
    config_map = kube_objects()["ConfigMap"]
    for source in container().get("envFrom", []):
        assert source["configMapRef"]["name"] == config_map["metadata"]["name"]
        env |= config_map["data"]
    env |= {e["name"]: e["value"] for e in container().get("env", [])}
    return env


def compose_service() -> dict[str, Any]:
    (doc,) = load_docs(COMPOSE)
    (service,) = doc["services"].values()
    result: dict[str, Any] = service
    return result


def compose_env() -> dict[str, str]:
    environment = compose_service().get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    return container_env() | {k: str(v) for k, v in environment.items()}


def settings_of(env: Mapping[str, str], where: str) -> Settings:
    names = {name for name in env if name.startswith(ENV_PREFIX)}
    assert names <= ENV_NAMES, f"{where}: not settings: {sorted(names - ENV_NAMES)}"
    try:
        settings = Settings.from_env(env)
    except SettingsError as error:
        pytest.fail(f"{where}: {error}")
    assert settings.server.host in {"0.0.0.0", "::"}, f"{where}: unreachable from outside"
    return settings


@pytest.mark.parametrize(
    ("where", "env"),
    [("Dockerfile", container_env), ("kubernetes", kube_env), ("compose", compose_env)],
)
def test_settings_are_real_and_valid(where: str, env: Callable[[], dict[str, str]]) -> None:
    settings_of(env(), where)


def test_configmap_holds_only_settings() -> None:
    data = kube_objects()["ConfigMap"]["data"]
    assert set(data) <= ENV_NAMES, sorted(set(data) - ENV_NAMES)
    assert all(isinstance(v, str) for v in data.values())  # an unquoted 8000 is refused


# --- ports, probes and paths -------------------------------------------------------------------


def named_port(port: int | str) -> int:
    """A container port, by number or by name."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container()["ports"] if p["name"] == port]
    result: int = number
    return result


def test_ports_agree() -> None:
    port = settings_of(kube_env(), "kubernetes").server.port
    assert [p["containerPort"] for p in container()["ports"]] == [port]
    (service_port,) = kube_objects()["Service"]["spec"]["ports"]
    assert service_port["name"] == "http"
    assert named_port(service_port["targetPort"]) == port
    annotations = kube_objects()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    docker_port = settings_of(container_env(), "Dockerfile").server.port
    assert only(stage(-1), "EXPOSE").split() in ([str(docker_port)], [f"{docker_port}/tcp"])
    compose_port = settings_of(compose_env(), "compose").server.port
    assert any(
        str(mapping).rpartition(":")[2].removesuffix("/tcp") == str(compose_port)
        for mapping in compose_service()["ports"]
    )


def probes() -> dict[str, dict[str, Any]]:
    names = ("startupProbe", "readinessProbe", "livenessProbe")
    return {name: container()[name] for name in names if name in container()}


def test_probes_get_health_on_the_server_port() -> None:
    found = probes()
    assert {"readinessProbe", "livenessProbe"} <= set(found)
    port = settings_of(kube_env(), "kubernetes").server.port
    for name, probe in found.items():
        assert probe["httpGet"]["path"] == "/health", name
        assert named_port(probe["httpGet"]["port"]) == port, name


def served_paths() -> Iterator[tuple[str, str]]:
    """(where, path) for every path the deployment files make somebody request."""
    for name, probe in probes().items():
        yield name, probe["httpGet"]["path"]
    annotations = kube_objects()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    yield "prometheus.io/path", annotations["prometheus.io/path"]
    for endpoint in kube_objects()["ServiceMonitor"]["spec"]["endpoints"]:
        yield "ServiceMonitor", endpoint.get("path", "/metrics")
    urls = re.findall(r"https?://[^'\"\s]+", " ".join(healthcheck()[1]))
    assert urls, "HEALTHCHECK requests no URL"
    for url in urls:
        yield "HEALTHCHECK", "/" + url.split("://", 1)[1].partition("/")[2]


async def test_paths_are_served() -> None:
    settings = settings_of(kube_env(), "kubernetes").replace(corpus_articles=64)
    app = create_app(settings)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        for where, path in served_paths():
            response = await client.get(path)
            assert response.status_code == 200, f"{where}: GET {path}"
            if path == "/metrics":
                assert response.content_type.startswith("text/plain"), where


def test_servicemonitor_scrapes_the_service() -> None:
    monitor = kube_objects()["ServiceMonitor"]
    service = kube_objects()["Service"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert subset(NAME_LABEL, monitor["metadata"]["labels"])
    assert subset(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    port_names = {p["name"] for p in service["spec"]["ports"]}
    endpoints = monitor["spec"]["endpoints"]
    assert endpoints
    for endpoint in endpoints:
        assert endpoint["port"] in port_names
        assert endpoint.get("path", "/metrics") == "/metrics"
        assert endpoint.get("scheme", "http") == "http"


# --- hardening and shutdown -----------------------------------------------------------------------


def test_deployment_is_locked_down() -> None:
    pod = kube_objects()["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"].get("runAsUser", user_id()) == user_id() != 0
    security = container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # A read-only root still needs a writable /tmp (tempfile, --workers' metrics files).
    (tmp,) = [m for m in container()["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == tmp["name"]]
    assert "emptyDir" in volume
    assert not tmp.get("readOnly", False)
    resources = container()["resources"]
    for kind in ("requests", "limits"):
        cpu = str(resources[kind]["cpu"])
        cores = float(cpu.removesuffix("m")) / 1000 if cpu.endswith("m") else float(cpu)
        assert 0.5 <= cores <= 2, f"{kind}.cpu {cpu}: about one core"
        assert resources[kind]["memory"]


def prestop_sleep_s() -> float:
    handler = container()["lifecycle"]["preStop"]
    if "sleep" in handler:  # Kubernetes' own sleep action
        return float(handler["sleep"]["seconds"])
    command = handler["exec"]["command"]
    assert PurePosixPath(command[0]).name == "sleep", command
    (seconds,) = command[1:]
    return float(seconds)


def test_grace_period_covers_prestop_and_drain() -> None:
    pod = kube_objects()["Deployment"]["spec"]["template"]["spec"]
    drain_s = settings_of(kube_env(), "kubernetes").server.graceful_timeout_s
    sleep_s = prestop_sleep_s()
    assert sleep_s > 0
    grace_s = pod["terminationGracePeriodSeconds"]
    assert grace_s >= sleep_s + drain_s + SHUTDOWN_MARGIN_S, (grace_s, sleep_s, drain_s)


def test_compose_stops_after_the_drain() -> None:
    service = compose_service()
    build = service["build"]
    context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
    dockerfile_name = (
        "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    )
    assert (context / dockerfile_name).resolve() == DOCKERFILE.resolve()
    drain_s = settings_of(compose_env(), "compose").server.graceful_timeout_s
    assert duration_s(service["stop_grace_period"]) >= drain_s + SHUTDOWN_MARGIN_S
    assert service.get("stop_signal", "SIGTERM") == "SIGTERM"
    if "healthcheck" in service:  # else the image's HEALTHCHECK applies
        assert not service["healthcheck"].get("disable", False)
        test = service["healthcheck"].get("test")
        assert test is None or "/health" in " ".join(test if isinstance(test, list) else [test])
    else:
        healthcheck()


# --- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_images_and_user() -> None:
    stage_names = set()
    for i in dockerfile():
        if i.keyword != "FROM":
            continue
        words = i.args.split()
        image = next(w for w in words if not w.startswith("--"))
        if image not in stage_names:
            assert re.fullmatch(r"python:3\.\d+-slim(?:-\w+)?(?:@sha256:\w+)?", image), image
        if len(words) >= 3 and words[-2].upper() == "AS":
            stage_names.add(words[-1])
    assert user_id() != 0
    users = [n for n, i in enumerate(stage(-1)) if i.keyword == "USER"]
    entry = [n for n, i in enumerate(stage(-1)) if i.keyword == "ENTRYPOINT"]
    assert users[-1] < entry[-1]


def test_dockerfile_environment_and_commands() -> None:
    env = container_env()
    for name in ("PIP_NO_CACHE_DIR", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"):
        assert env.get(name) == "1", name
    assert {"TRIO_MOCK_HOST", "TRIO_MOCK_PORT"} <= set(env)
    settings_of(env, "Dockerfile")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert exec_form(only(stage(-1), "ENTRYPOINT"))[0] in scripts["scripts"]
    assert only(stage(-1), "STOPSIGNAL") == "SIGTERM"
    options, command = healthcheck()
    assert command[0] == "python", "slim images have Python, not curl"
    assert "/health" in " ".join(command)
    assert duration_s(options["timeout"]) < duration_s(options["interval"])


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    patterns = ignore_patterns()
    for junk in (".git/HEAD", ".venv/bin/python", ".nox/x", "tests/test_x.py", ".pytest_cache/x"):
        assert docker_ignores(junk, patterns), junk
    assert docker_ignores("src/trio_mock/__pycache__/_app.cpython-311.pyc", patterns)
    sources = [f for f in (ROOT / "src").rglob("*") if f.is_file() and "__pycache__" not in f.parts]
    assert sources
    for path in sources:
        assert not docker_ignores(path.relative_to(ROOT).as_posix(), patterns), path
    for source, _ in copies(stage(0)):
        assert not docker_ignores(source, patterns), source


# --- the Dockerfile's commands, run here ------------------------------------------------------------


def copies(instructions: Sequence[Instruction]) -> list[tuple[str, str]]:
    """(context source, destination) of each COPY from the build context in a stage."""
    pairs: list[tuple[str, str]] = []
    for i in instructions:
        if i.keyword not in {"COPY", "ADD"}:
            continue
        words = exec_form(i.args) if i.args.startswith("[") else shlex.split(i.args)
        if any(w.startswith("--from") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        pairs.extend((source, words[-1]) for source in words[:-1])
    return pairs


def build_context(rootfs: Path) -> Path:
    """Play the first stage's WORKDIR and COPY lines into ``rootfs``; return its WORKDIR.

    Only what .dockerignore lets into the context is copied, as ``docker build`` would.
    """
    build = stage(0)
    workdir = PurePosixPath("/")
    for i in build:
        if i.keyword == "WORKDIR":
            workdir = workdir / i.args
    patterns = ignore_patterns()
    for source, dest in copies(build):
        target = rootfs / (workdir / dest).relative_to("/")
        matches = sorted(ROOT.glob(source.rstrip("/")))
        assert matches, f"COPY {source}: nothing in the context"
        for match in matches:
            files = [match] if match.is_file() else sorted(match.rglob("*"))
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                if not file.is_file() or docker_ignores(relative, patterns):
                    continue
                if match.is_dir():  # a directory's contents land in dest
                    out = target / file.relative_to(match)
                elif dest.endswith("/"):
                    out = target / file.name
                else:
                    out = target
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, out)
    return rootfs / workdir.relative_to("/")


async def run(
    argv: Sequence[str], limit_s: float, **kwargs: Any
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` to completion, output captured; cancelled (killed) after ``limit_s``."""
    with trio.fail_after(limit_s):
        return await trio.run_process(
            list(argv), check=False, capture_stdout=True, capture_stderr=True, **kwargs
        )


async def install_like_the_build_stage(tmp_path: Path) -> Path:
    """A fresh venv holding the project as built from the build stage's files; its bin/."""
    source = await trio.to_thread.run_sync(build_context, tmp_path / "rootfs")
    build_runs = [shlex.split(i.args) for i in stage(0) if i.keyword == "RUN"]
    # The build stage builds (or installs) its WORKDIR with pip: that is what is done here.
    assert any("pip" in words and "." in words for words in build_runs), build_runs
    venv = tmp_path / "venv"
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    python = venv / "bin" / "python"
    if uv:
        steps = [
            [sys.executable, "-m", "venv", "--without-pip", str(venv)],
            [uv, "pip", "install", "--quiet", "--python", str(python), str(source)],
        ]
    else:
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "--quiet", str(source)],
        ]
    for argv in steps:
        result = await run(argv, INSTALL_TIMEOUT_S)
        assert result.returncode == 0, result.stderr.decode(errors="replace")
    return venv / "bin"


@pytest.mark.slow
async def test_image_commands_serve_pass_healthcheck_and_stop(tmp_path: Path) -> None:
    bin_dir = await install_like_the_build_stage(tmp_path)
    port = free_port()
    env = {
        "PATH": os.pathsep.join([str(bin_dir), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(tmp_path),
        **container_env(),
        "TRIO_MOCK_HOST": "127.0.0.1",
        "TRIO_MOCK_PORT": str(port),
    }
    cmd = [i.args for i in stage(-1) if i.keyword == "CMD"]
    argv = exec_form(only(stage(-1), "ENTRYPOINT")) + (exec_form(cmd[-1]) if cmd else [])
    program = shutil.which(argv[0], path=str(bin_dir))
    assert program, f"{argv[0]} is not installed by the build"
    options, check = healthcheck()
    check_limit_s = duration_s(options.get("timeout", "30s")) + 10  # + Python's start-up

    # Nothing listens yet: the health check must say so.
    result = await run(check, check_limit_s, env=env)
    assert result.returncode != 0, "HEALTHCHECK passes with no server"

    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = await trio.lowlevel.open_process(
            [program, *argv[1:]],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        with trio.fail_after(START_TIMEOUT_S):
            while True:
                if process.returncode is not None:
                    pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()}")
                with suppress(OSError):
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                    await stream.aclose()
                    break
                await trio.sleep(0.05)
        result = await run(check, check_limit_s, env=env)
        assert result.returncode == 0, result.stderr.decode(errors="replace")

        process.send_signal(signal.Signals[only(stage(-1), "STOPSIGNAL")])
        with trio.fail_after(DOCKER_STOP_TIMEOUT_S):
            returncode = await process.wait()
    finally:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with trio.move_on_after(5, shield=True):
            await process.wait()
    output = log.read_text()
    assert returncode == 0, output
    assert "Traceback" not in output
