"""Entry points: ``python -m trio_mock``, the ``trio-mock`` script, ``hypercorn -k trio
trio_mock:app`` (plain ``hypercorn trio_mock:app`` is refused), ``--workers``, settings
precedence, and embedding ``serve``.

Subprocess tests run real servers on loopback; every wait is bounded, and every process
(with its children: each runs in its own session) is killed in ``finally``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import trio

import trio_mock
from conftest import fast_settings
from helpers import clean_env, served_url
from trio_mock._config._cpus import usable_cpus
from trio_mock._config._knobs import SettingsError
from trio_mock._config._settings import KNOBS, Settings
from trio_mock.testing import MockServer

BIN = Path(sys.executable).parent
CHAT = "/v1/chat/completions"
FAST_FLAGS = ["--ttft-ms", "0", "--itl-ms", "0", "--corpus-articles", "64"]
START_TIMEOUT_S = 30  # imports and the tokenizer take a second or two; CI may be slower
STOP_TIMEOUT_S = 10


def chat_body(*, stream: bool = False) -> dict[str, Any]:
    return {
        "model": "trio-mock",
        "messages": [{"role": "user", "content": "Hi."}],
        "max_tokens": 3,
        "stream": stream,
    }


async def check_chat(client: httpx.AsyncClient, url: str, model: str = "trio-mock") -> None:
    body = chat_body() | {"model": model}
    response = await client.post(url + CHAT, json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["model"] == model
    assert data["choices"][0]["message"]["content"]
    assert data["usage"]["completion_tokens"] == 3


def kill_group(process: trio.Process) -> None:
    """SIGKILL the session ``process`` leads: it and any workers it started."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


@asynccontextmanager
async def launched(
    args: Sequence[str], log: Path, env: Mapping[str, str] | None = None
) -> AsyncGenerator[trio.Process, None]:
    """Start ``args`` in a new session, output to ``log``; kill it and its children at exit."""
    with log.open("wb") as out:
        process = await trio.lowlevel.open_process(
            list(args),
            env=dict(env or clean_env()),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        kill_group(process)
        with trio.move_on_after(STOP_TIMEOUT_S, shield=True):  # reap it even when cancelled
            await process.wait()


async def wait_serving(client: httpx.AsyncClient, process: trio.Process, log: Path) -> str:
    """The base URL of a server started on port 0, once ``/health`` answers 200 there.

    Fails if the process exits before it logs where it listens.
    """
    url = await served_url(process, log)
    with trio.fail_after(START_TIMEOUT_S):  # bound: the kernel queues us until it accepts
        response = await client.get(url + "/health")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok"}
    return url


async def wait_exit(process: trio.Process) -> int:
    with trio.fail_after(STOP_TIMEOUT_S):
        return await process.wait()


def run_cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``trio-mock`` to completion (bounded); ``subprocess.run`` kills it on timeout."""
    return subprocess.run(
        [str(BIN / "trio-mock"), *args],
        env=dict(env or clean_env()),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        check=False,
    )


# --- python -m trio_mock -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_module_serves_and_stops_on_signal(tmp_path: Path, signum: signal.Signals) -> None:
    log = tmp_path / "server.log"
    args = [sys.executable, "-m", "trio_mock", "--port", "0", *FAST_FLAGS]
    async with launched(args, log) as process:
        async with httpx.AsyncClient() as client:
            url = await wait_serving(client, process, log)
            with trio.fail_after(5):
                await check_chat(client, url)
        # The client is closed: an idle keep-alive connection would hold shutdown for the
        # whole grace period (see test_transport.test_graceful_shutdown_closes_idle_keep_alive).
        process.send_signal(signum)
        returncode = await wait_exit(process)
    output = await trio.Path(log).read_text()
    assert returncode == 0, output
    assert f"received {signum.name}, shutting down" in output
    assert "Traceback" not in output


@pytest.mark.slow
async def test_sigterm_lets_stream_in_flight_finish(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    # 20 tokens at 20 ms: about 0.4 s, inside the default 5 s grace period.
    args = [str(BIN / "trio-mock"), "--port", "0", *FAST_FLAGS, "--itl-ms", "20"]
    payloads: list[str] = []
    async with launched(args, log) as process:
        async with httpx.AsyncClient() as client:
            url = await wait_serving(client, process, log)
            body = chat_body(stream=True) | {"max_tokens": 20}
            with trio.fail_after(5):
                async with client.stream("POST", url + CHAT, json=body) as response:
                    async for line in response.aiter_lines():
                        if not line.startswith("data: "):
                            continue
                        payloads.append(line.removeprefix("data: "))
                        if len(payloads) == 2:
                            process.send_signal(signal.SIGTERM)  # once: a second one forces
        returncode = await wait_exit(process)
    output = await trio.Path(log).read_text()
    assert "received SIGTERM, shutting down" in output
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p)["choices"][0] for p in payloads[:-1]]
    assert sum(1 for c in chunks if c["delta"].get("content")) == 20
    assert chunks[-1]["finish_reason"] == "length"
    assert returncode == 0, output


# --- trio-mock --help ------------------------------------------------------------------------


def help_entries(text: str) -> dict[str, str]:
    """Option entries of argparse's help: first flag -> the whole entry on one line."""
    entries: dict[str, str] = {}
    current: str | None = None
    for line in (raw.strip() for raw in text.splitlines()):
        if line.startswith("-"):
            current = line.split()[0].rstrip(",")
            entries[current] = line
        elif line and current is not None:  # help moved below a long flag
            entries[current] += " " + line
        else:
            current = None
    return entries


@pytest.mark.slow
def test_help_lists_every_knob() -> None:
    # Wide enough that argparse wraps no help text.
    result = run_cli("--help", env=clean_env(COLUMNS="10000"))
    assert result.returncode == 0, result.stderr
    entries = help_entries(result.stdout)
    for knob in KNOBS.values():
        default = ",".join(knob.default) if isinstance(knob.default, tuple) else str(knob.default)
        assert knob.flag in entries, f"{knob.flag} is not in --help"
        assert f"[default: {default}; env: {knob.env}]" in entries[knob.flag]
        if knob.type is bool:
            assert entries[knob.flag].startswith(f"{knob.flag}, --no-{knob.flag[2:]} ")


# --- bad values: exit 2, one line naming the knob -------------------------------------------


BAD_VALUES: dict[str, tuple[list[str], dict[str, str], str]] = {
    # id: (arguments, environment, what the line must name)
    "negative-ttft": (["--ttft-ms", "-5"], {}, "--ttft-ms"),
    "unknown-tokenizer": (["--tokenizer", "nope"], {}, "--tokenizer"),
    "missing-cert": (["--certfile", "/nonexistent", "--keyfile", "/nonexistent"], {}, "--certfile"),
    "env-port": ([], {"TRIO_MOCK_PORT": "abc"}, "TRIO_MOCK_PORT"),
    "toml-unknown-key": (["--config", "BAD_TOML"], {}, "bogus_knob"),
}


@pytest.fixture(scope="module")
def bad_value_results(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[int, str]]]:
    """Run every BAD_VALUES case at once (start-up costs a second each); id -> (status, stderr)."""
    toml = tmp_path_factory.mktemp("config") / "bad.toml"
    toml.write_text("ttft_ms = 0\nbogus_knob = 1\n[latency]\nitl_ms = 0\n", encoding="utf-8")
    port = "0"  # should a bad value be accepted, the server still starts safely
    processes: dict[str, subprocess.Popen[str]] = {}
    try:
        for case, (args, env, _) in BAD_VALUES.items():
            argv = [str(toml) if a == "BAD_TOML" else a for a in args]
            if case != "env-port":
                argv += ["--port", port]
            processes[case] = subprocess.Popen(
                [str(BIN / "trio-mock"), *argv],
                env=clean_env(**env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        results = {}
        for case, process in processes.items():
            try:
                _, stderr = process.communicate(timeout=START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                _, stderr = process.communicate()
            results[case] = (process.returncode, stderr)
        yield results
    finally:
        for process in processes.values():
            process.kill()
            process.wait()


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_bad_value_exits_2_with_one_line(
    bad_value_results: dict[str, tuple[int, str]], case: str
) -> None:
    status, stderr = bad_value_results[case]
    names = BAD_VALUES[case][2]
    assert status == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("trio-mock: error: ")
    assert names in lines[0]


# --- precedence: CLI > environment > TOML > default ------------------------------------------


@pytest.mark.slow
async def test_precedence_in_a_running_server(tmp_path: Path) -> None:
    config = tmp_path / "trio-mock.toml"
    config.write_text(
        'ttft_ms = 11\nitl_ms = 11\noutput_tokens_mean = 77\n[models]\nowned_by = "from-toml"\n',
        encoding="utf-8",
    )
    log = tmp_path / "server.log"
    env = clean_env(TRIO_MOCK_CONFIG=str(config), TRIO_MOCK_TTFT_MS="22", TRIO_MOCK_ITL_MS="0")
    args = [
        str(BIN / "trio-mock"),
        "--port",
        "0",
        "--ttft-ms",
        "0",
        "--corpus-articles",
        "64",
    ]
    async with launched(args, log, env) as process, httpx.AsyncClient() as client:
        url = await wait_serving(client, process, log)
        with trio.fail_after(5):
            response = await client.get(url + "/")
    assert response.status_code == 200
    settings = response.json()["settings"]
    assert settings["latency"]["ttft_ms"] == 0  # CLI over environment and TOML
    assert settings["latency"]["itl_ms"] == 0  # environment over TOML
    assert settings["output"]["output_tokens_mean"] == 77  # TOML over default
    assert settings["models"]["owned_by"] == "from-toml"  # TOML, under its group's table
    assert settings["output"]["corpus_seed"] == 0  # default
    assert settings["server"]["port"] == 0


@pytest.mark.parametrize(
    ("cli", "env", "toml", "expected"),
    [
        (1, 2, 3, 1.0),
        (1, None, 3, 1.0),
        (1, 2, None, 1.0),
        (None, 2, 3, 2.0),
        (None, None, 3, 3.0),
        (None, 2, None, 2.0),
        (None, None, None, 10.0),  # the default
    ],
)
def test_precedence_layers(
    tmp_path: Path, cli: int | None, env: int | None, toml: int | None, expected: float
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f"[latency]\nitl_ms = {toml}\n" if toml is not None else "", encoding="utf-8")
    settings = Settings.load(
        cli={"itl_ms": cli} if cli is not None else {},
        env={"TRIO_MOCK_ITL_MS": str(env)} if env is not None else {},
        config=config,
    )
    assert settings.latency.itl_ms == expected


def test_precedence_config_path_and_types(tmp_path: Path) -> None:
    from_env, from_arg = tmp_path / "env.toml", tmp_path / "arg.toml"
    from_env.write_text('models = ["x"]\n', encoding="utf-8")
    from_arg.write_text('models = ["y", "z"]\nany_model = false\n', encoding="utf-8")
    # TRIO_MOCK_CONFIG names a file when no config is passed; an explicit one wins.
    assert Settings.load(env={"TRIO_MOCK_CONFIG": str(from_env)}).models.models == ("x",)
    loaded = Settings.load(env={"TRIO_MOCK_CONFIG": str(from_env)}, config=from_arg)
    assert loaded.models.models == ("y", "z")
    assert loaded.models.any_model is False
    # Environment strings are parsed to the knob's type, and override the file.
    loaded = Settings.load(
        env={"TRIO_MOCK_MODELS": "a, b", "TRIO_MOCK_ANY_MODEL": "yes"}, config=from_arg
    )
    assert loaded.models.models == ("a", "b")
    assert loaded.models.any_model is True
    with pytest.raises(SettingsError, match="TRIO_MOCK_ANY_MODEL"):
        Settings.load(env={"TRIO_MOCK_ANY_MODEL": "maybe"})


# --- hypercorn -k trio trio_mock:app ----------------------------------------------------------


@pytest.mark.slow
async def test_hypercorn_serves_app_from_env(tmp_path: Path) -> None:
    log = tmp_path / "hypercorn.log"
    env = clean_env(
        TRIO_MOCK_TTFT_MS="0",
        TRIO_MOCK_ITL_MS="0",
        TRIO_MOCK_MODELS="a,b",
        TRIO_MOCK_CORPUS_ARTICLES="64",
    )
    args = [str(BIN / "hypercorn"), "-k", "trio", "trio_mock:app", "--bind", "127.0.0.1:0"]
    async with launched(args, log, env) as process:
        async with httpx.AsyncClient() as client:
            url = await wait_serving(client, process, log)
            with trio.fail_after(5):
                await check_chat(client, url, model="a")
                models = (await client.get(url + "/v1/models")).json()
        process.send_signal(signal.SIGTERM)
        returncode = await wait_exit(process)
    output = await trio.Path(log).read_text()
    assert [m["id"] for m in models["data"]] == ["a", "b"]
    assert returncode == 0, output
    assert "Error in ASGI Framework" not in output


@pytest.mark.slow
@pytest.mark.parametrize("workers", [[], ["--workers", "0"]], ids=["spawned", "in-process"])
async def test_plain_hypercorn_refuses_before_serving(workers: list[str]) -> None:
    """Without ``-k trio``, Hypercorn's asyncio worker would serve empty 500s: the app
    stops it at start-up, in one line naming the command to use."""
    args = [str(BIN / "hypercorn"), *workers, "trio_mock:app", "--bind", "127.0.0.1:0"]
    with trio.fail_after(START_TIMEOUT_S):
        done = await trio.run_process(args, env=clean_env(), capture_stderr=True, check=False)
    output = done.stderr.decode()
    assert output.splitlines() == [
        "trio-mock runs on Trio, not on this server's event loop:"
        " use `hypercorn -k trio trio_mock:app` (or the `trio-mock` command)"
    ]
    # Hypercorn drops a spawned worker's exit code (``run._join_exited`` runs twice).
    assert done.returncode == (1 if workers else 0)


def test_app_outside_trio_refuses_in_one_line() -> None:
    """Under asyncio, the lifespan ends the server with the line; a request that arrives
    without a lifespan (a server that skipped it) gets the line as its 500."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body is never read")

    app = trio_mock.app
    with pytest.raises(SystemExit, match=r"use `hypercorn -k trio trio_mock:app`"):
        asyncio.run(app({"type": "lifespan"}, receive, send))
    asyncio.run(app({"type": "http", "path": "/health"}, receive, send))
    start, body = sent
    assert start["status"] == 500
    assert body["body"].decode().startswith("trio-mock runs on Trio")


# --- --workers 2 ---------------------------------------------------------------------------------


def proc_state(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc, or None if it is gone."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The fields after the command name (which may hold spaces): state, ppid, ...
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return state, int(ppid)


def children(pid: int) -> list[int]:
    """The live (not zombie) child processes of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = proc_state(int(entry.name))
            if info is not None and info[1] == pid and info[0] != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    info = proc_state(pid)
    return info is not None and info[0] != "Z"


def is_worker(pid: int, supervisor: int) -> bool:
    """A worker: forked, so it runs the supervisor's command line (any other child, such
    as a multiprocessing helper, runs its own)."""
    try:
        return read_cmdline(pid) == read_cmdline(supervisor)
    except OSError:
        return False


def read_cmdline(pid: int) -> bytes:
    return (Path("/proc") / str(pid) / "cmdline").read_bytes()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc to find the workers")
async def test_two_workers_share_one_port(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    args = [str(BIN / "trio-mock"), "--port", "0", "--workers", "2", *FAST_FLAGS]
    async with launched(args, log) as process:
        async with httpx.AsyncClient() as client:
            url = await wait_serving(client, process, log)
        workers = [pid for pid in children(process.pid) if is_worker(pid, process.pid)]
        assert len(workers) == 2, await trio.Path(log).read_text()
        # A new connection for each request, so the kernel may hand it to either worker.
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=no_reuse) as client:
            with trio.fail_after(10):
                for _ in range(8):
                    await check_chat(client, url)
        process.send_signal(signal.SIGTERM)
        returncode = await wait_exit(process)
        output = await trio.Path(log).read_text()
        assert returncode == 0, output
        # The workers end with the supervisor (other processes: no event to wait on).
        with trio.fail_after(5):
            while any(alive(pid) for pid in workers):  # ruff: ignore[async-busy-wait]
                await trio.sleep(0.05)
    assert "Traceback" not in output


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="sets the CPU affinity")
async def test_workers_auto_starts_one_per_usable_cpu(tmp_path: Path) -> None:
    """Under an affinity mask of at most 2 CPUs (a big CI machine would start dozens),
    ``--workers auto`` starts one worker per CPU, or serves in one process on one CPU."""
    cpus = sorted(os.sched_getaffinity(0))[:2]
    expected = min(len(cpus), usable_cpus())  # a cgroup quota may allow fewer
    log = tmp_path / "server.log"
    pinned = f"import os, sys; os.sched_setaffinity(0, {cpus}); sys.argv[0] = 'trio-mock'; "
    pinned += "from trio_mock._app._cli import main; main()"
    args = [sys.executable, "-c", pinned, "--port", "0", "--workers", "auto", *FAST_FLAGS]
    async with launched(args, log) as process:
        async with httpx.AsyncClient() as client:
            url = await wait_serving(client, process, log)
            await check_chat(client, url)
        workers = [pid for pid in children(process.pid) if is_worker(pid, process.pid)]
        output = await trio.Path(log).read_text()
        assert len(workers) == (expected if expected > 1 else 0), output
        if expected > 1:
            assert f"with {expected} workers" in output
        process.send_signal(signal.SIGTERM)
        assert await wait_exit(process) == 0, await trio.Path(log).read_text()


# --- embedding: serve in your own nursery -----------------------------------------------------


async def test_embedded_serve_reports_real_url() -> None:
    settings = fast_settings(port=0)
    shutdown = trio.Event()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(
                partial(trio_mock.serve, settings, shutdown_trigger=shutdown.wait)
            )
            assert len(binds) == 1
            assert binds[0].startswith("http://127.0.0.1:")
            port = int(binds[0].rsplit(":", 1)[1])
            assert port != 0
            async with httpx.AsyncClient() as client:
                assert (await client.get(binds[0] + "/health")).status_code == 200
                await check_chat(client, binds[0])
            shutdown.set()
        # serve returned, so the nursery closed: nothing listens on the port any more.
        with pytest.raises(OSError, match="all attempts to connect"):
            await trio.open_tcp_stream("127.0.0.1", port)


async def test_urls_are_named_alike_everywhere() -> None:
    """``base_url`` is the root, as ``serve`` reports it; ``url`` the OpenAI base below it,
    on ``running()``'s server and on ``MockServer`` alike (README: "Two URLs, two names")."""
    async with trio_mock.running(fast_settings()) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        assert not server.base_url.endswith("/v1")
        assert server.url == server.base_url + "/v1"
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(server.base_url + "/health")).status_code == 200
            assert (await http.get(server.url + "/models")).status_code == 200
        async with openai.AsyncOpenAI(base_url=server.url, api_key="k", max_retries=0) as sdk:
            assert [m.id async for m in sdk.models.list()] == ["trio-mock"]

    def in_thread() -> tuple[str, str]:
        with MockServer(fast_settings()) as mock:
            return mock.base_url, mock.url

    base_url, url = await trio.to_thread.run_sync(in_thread)
    assert base_url.startswith("http://127.0.0.1:")
    assert url == base_url + "/v1"
