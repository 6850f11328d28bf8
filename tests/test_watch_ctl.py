"""Replicas beyond one machine (issue 18): watched files and ``trio-mock ctl``.

What this file proves:

- A served app watching ``--config`` and ``--scripts-file`` (the real server on loopback,
  the real clock, the watch every 20 ms): a changed config file's live knobs reach the
  next requests (their planned TTFT in the journal), a start-up-only knob in it is logged
  and left alone, flags keep outranking the file, a changed scripts file replaces the
  rules, and a bad file of either kind is logged with its path while the running state
  stays.
- The same through the real CLI with ``--workers 2``: worker 0 applies the files' changes
  through the supervisor, so requests on fresh connections, whichever worker serves
  them, all plan the new TTFT and get the new rule's answer.
- ``PUT /_mock/scripts`` replaces the rules at once (in one process, and through the hub
  for several workers in one order), and a bad rule leaves the old ones.
- ``deploy/replicas``: the headless Service and the files' ConfigMap validate, the files
  load, and the overlay takes out of the environment every knob the file sets.
- ``trio-mock ctl`` against two real servers (two loopback ports, ``--url``, an admin
  key): both get the change and the rules, one line each, exit 0; an endpoint that is
  down is reported and the exit status is 1; a host name stands for each of its
  addresses (a fake resolver, IPv4 and IPv6, duplicates once); bad use exits 2.
- ``trio-mock ctl`` steers every endpoint at once: three that never answer, one live
  and one refusing take about one ``--timeout`` in all, not three, and the lines come
  in the order given.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import tomllib
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import trio
import yaml

from helpers import clean_env, free_port, served_url
from test_entrypoints import launched, run_cli
from test_shared_state import Members
from trio_mock import Settings
from trio_mock._app import _watch
from trio_mock._app._ctl import CtlError, ctl_main, endpoints
from trio_mock._app._running import running, serve
from trio_mock._app._watch import Sources
from trio_mock._config._settings import KNOBS, flatten
from trio_mock._serve._scripts import read_rules

BIN = Path(sys.executable).parent
CHAT = "/v1/chat/completions"
LIMIT_S = 30
ADMIN = "admin-secret"
RULE = {"match": {"text": "magic"}, "reply": {"content": "scripted"}}


def chat(text: str = "Hi.") -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}], "max_tokens": 2}


async def planned_ttft(client: httpx.AsyncClient, request_id: str) -> float:
    """Send a chat; the TTFT its journal entry planned (the journal is written a moment
    after the last byte)."""
    answer = await client.post(CHAT, json=chat(), headers={"x-request-id": request_id})
    assert answer.status_code == 200, answer.text
    while True:
        found = (await client.get("/_mock/requests", params={"limit": 20})).json()["data"]
        for entry in found:
            if entry["id"] == request_id:
                return float(entry["plan"]["ttft_ms"])
        await trio.sleep(0.02)


async def wait_for(check: Any) -> None:
    """Until ``check()`` (a sync test of the server's state or log) holds."""
    while True:
        if await check():
            return
        await trio.sleep(0.02)


# --- the watch, in this process --------------------------------------------------------------


@asynccontextmanager
async def watched(config: Path, cli: dict[str, Any]) -> AsyncGenerator[httpx.AsyncClient]:
    sources = Sources(str(config), cli)
    settings = sources.load()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        run = partial(serve, settings, shutdown_trigger=stop.wait, watch=sources)
        binds = await nursery.start(run)
        try:
            async with httpx.AsyncClient(base_url=binds[0], timeout=10) as client:
                yield client
        finally:
            stop.set()


async def test_watched_files_apply_their_changes_and_keep_state_on_a_bad_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_watch, "WATCH_S", 0.02)
    caplog.set_level(logging.INFO, "trio_mock")
    config, scripts = tmp_path / "config.toml", tmp_path / "rules.json"
    config.write_text(f'ttft_ms = 0\nitl_ms = 0\nscripts_file = "{scripts}"\n')
    scripts.write_text(json.dumps({"rules": []}))
    cli = {"port": 0, "host": "127.0.0.1", "corpus_articles": 64, "itl_ms": 1}
    with trio.fail_after(LIMIT_S):
        async with watched(config, cli) as client:
            assert await planned_ttft(client, "before") == 0

            async def config_says(ms: float) -> bool:
                got = (await client.get("/_mock/config")).json()["settings"]["latency"]
                return bool(got["ttft_ms"] == ms)

            # itl_ms set by a flag outranks the file; journal_file is read at start-up only.
            config.write_text(
                f'ttft_ms = 40\nitl_ms = 9\njournal_file = "{tmp_path / "j"}"\n'
                f'scripts_file = "{scripts}"\n'
            )
            await wait_for(partial(config_says, 40))
            assert [await planned_ttft(client, f"after{i}") for i in range(3)] == [40] * 3
            settings = (await client.get("/_mock/config")).json()["settings"]
            assert settings["latency"]["itl_ms"] == 1
            assert settings["observability"]["journal_file"] is None
            assert "journal_file read at start-up only" in caplog.text

            config.write_text("ttft_ms = [not toml\n")

            async def logged(text: str) -> bool:
                await trio.lowlevel.checkpoint()
                return text in caplog.text

            await wait_for(partial(logged, f"config file {config} not applied"))
            assert await planned_ttft(client, "bad") == 40

            scripts.write_text(json.dumps({"rules": [RULE]}))
            await wait_for(partial(logged, f"scripts file {scripts} applied: 1 rules"))
            answer = await client.post(CHAT, json=chat("magic"))
            assert answer.json()["choices"][0]["message"]["content"] == "scripted"

            scripts.write_text(json.dumps({"rules": [{"reply": {"status": 999}}]}))
            await wait_for(partial(logged, f"scripts file {scripts} not applied"))
            listed = (await client.get("/_mock/scripts")).json()["data"]
            assert [rule["reply"]["content"] for rule in listed] == ["scripted"]


# --- the watch with --workers 2 ----------------------------------------------------------------


@pytest.mark.slow
async def test_workers_all_take_the_watched_files_once(tmp_path: Path) -> None:
    config, log = tmp_path / "config.toml", tmp_path / "server.log"
    scripts = tmp_path / "rules.json"
    config.write_text("ttft_ms = 0\nitl_ms = 0\ncorpus_articles = 64\n")
    scripts.write_text('{"rules": []}')
    args = [str(BIN / "trio-mock"), "--port", "0", "--workers", "2", "--config", str(config),
            "--scripts-file", str(scripts)]  # fmt: skip
    with trio.fail_after(LIMIT_S):
        async with launched(args, log, clean_env()) as process:
            url = await served_url(process, log)
            no_reuse = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(base_url=url, limits=no_reuse, timeout=10) as client:
                assert await planned_ttft(client, "before") == 0
                config.write_text("ttft_ms = 30\nitl_ms = 0\ncorpus_articles = 64\n")

                async def applied() -> bool:
                    text = await trio.Path(log).read_text()
                    return f"config file {config} applied: ttft_ms" in text

                await wait_for(applied)  # polled once a second by worker 0
                ttfts = [await planned_ttft(client, f"r{i}") for i in range(12)]
                assert ttfts == [30] * 12
                found = (await client.get("/_mock/requests")).json()["data"]
                assert {entry["worker"] for entry in found} == {0, 1}
                scripts.write_text(json.dumps([RULE]))

                async def replaced() -> bool:
                    text = await trio.Path(log).read_text()
                    return f"scripts file {scripts} applied: 1 rules" in text

                await wait_for(replaced)
                for _ in range(6):  # fresh connections: both workers
                    answer = await client.post(CHAT, json=chat("magic"))
                    assert answer.json()["choices"][0]["message"]["content"] == "scripted"
            text = await trio.Path(log).read_text()
            assert text.count("applied: ttft_ms") == 1  # one watcher: worker 0


# --- trio-mock ctl -------------------------------------------------------------------------------


def fake_resolver(table: dict[str, list[str]]) -> Any:
    def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (ip, port),
            )
            for ip in table[host]
        ]

    return resolve


def test_a_host_stands_for_each_of_its_addresses() -> None:
    resolve = fake_resolver({"mock.svc": ["10.0.0.1", "10.0.0.2", "10.0.0.1", "fd00::3"]})
    found = endpoints(["mock.svc"], 8000, ["http://127.0.0.1:9/"], resolve=resolve)
    assert found == [
        "http://10.0.0.1:8000",
        "http://10.0.0.2:8000",
        "http://[fd00::3]:8000",
        "http://127.0.0.1:9",
    ]
    with pytest.raises(CtlError, match="cannot resolve 'nowhere'"):
        endpoints(["nowhere"], 8000, [], resolve=resolve)


def test_ctl_refuses_bad_use(capsys: pytest.CaptureFixture[str]) -> None:
    resolve = fake_resolver({})
    assert ctl_main(["--url", "http://127.0.0.1:9"], resolve) == 2
    assert ctl_main(["--set", "ttft_ms"], resolve) == 2
    assert ctl_main(["--set", "ttft_ms=1", "--host", "nowhere"], resolve) == 2
    assert ctl_main(["--set", "ttft_ms=1"], resolve) == 2
    err = capsys.readouterr().err
    assert "nothing to apply" in err
    assert "expected key=value" in err
    assert "cannot resolve 'nowhere'" in err
    assert "no endpoint" in err


async def test_ctl_steers_every_replica_and_reports_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rules]]\nmatch = {text = "magic"}\nreply = {content = "scripted"}\n')
    dead = f"http://127.0.0.1:{free_port()}"
    with trio.fail_after(LIMIT_S):
        async with (
            running(admin_key=ADMIN, corpus_articles=64, itl_ms=0) as one,
            running(admin_key=ADMIN, corpus_articles=64, itl_ms=0) as two,
        ):
            argv = ["--url", one.base_url, "--url", two.base_url, "--admin-key", ADMIN,
                    "--set", "ttft_ms=25", "--set", "itl-ms=2", "--scripts-file", str(rules),
                    "--timeout", "5"]  # fmt: skip
            status = await trio.to_thread.run_sync(ctl_main, argv)
            out = capsys.readouterr().out
            assert status == 0, out
            for server in (one, two):
                assert (server.settings.latency.ttft_ms, server.settings.latency.itl_ms) == (25, 2)
                assert [rule.spec.reply.content for rule in server.live.scripts.rules] == [
                    "scripted"
                ]
                assert f"ok     {server.base_url}: changed ttft_ms, itl_ms; 1 rules" in out
            assert "2 of 2 endpoints applied it" in out

            # Applied again: the rules are replaced, not added to; a dead endpoint and a
            # missing key are each reported, and the exit status says so.
            argv = ["--url", one.base_url, "--url", dead, "--scripts-file", str(rules),
                    "--admin-key", ADMIN, "--timeout", "2"]  # fmt: skip
            assert await trio.to_thread.run_sync(ctl_main, argv) == 1
            out = capsys.readouterr().out
            assert f"ok     {one.base_url}: 1 rules" in out
            assert f"error  {dead}:" in out
            assert "1 of 2 endpoints applied it" in out
            assert len(one.live.scripts.rules) == 1
            argv = ["--url", two.base_url, "--set", "ttft_ms=1"]
            assert await trio.to_thread.run_sync(ctl_main, argv) == 1
            assert f"error  {two.base_url}: 401" in capsys.readouterr().out
            assert two.settings.latency.ttft_ms == 25


async def test_ctl_steers_all_at_once_and_a_silent_endpoint_delays_none(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Three endpoints that accept and never answer (a listening socket nobody accepts
    from: the kernel completes the handshake), one live, one refusing: one at a time,
    the silent ones alone would take three timeouts."""
    timeout_s = 1.0
    silent = [socket.socket() for _ in range(3)]
    refused = f"http://127.0.0.1:{free_port()}"
    try:
        for sock in silent:
            sock.bind(("127.0.0.1", 0))
            sock.listen(8)
        silent_urls = [f"http://127.0.0.1:{sock.getsockname()[1]}" for sock in silent]
        with trio.fail_after(LIMIT_S):
            async with running(corpus_articles=64) as live:
                targets = [*silent_urls[:2], live.base_url, refused, silent_urls[2]]
                argv = [*(arg for url in targets for arg in ("--url", url)),
                        "--set", "ttft_ms=7", "--timeout", str(timeout_s)]  # fmt: skip
                started = trio.current_time()
                status = await trio.to_thread.run_sync(ctl_main, argv)
                took_s = trio.current_time() - started
                assert live.settings.latency.ttft_ms == 7
    finally:
        for sock in silent:
            sock.close()
    out = capsys.readouterr().out.splitlines()
    assert status == 1
    assert timeout_s <= took_s < 2.5 * timeout_s, took_s
    assert [line.split()[1].rstrip(":") for line in out[:-1]] == targets  # in the order given
    assert out[2] == f"ok     {live.base_url}: changed ttft_ms"
    assert [line.split()[0] for line in out[:-1]] == ["error", "error", "ok", "error", "error"]
    assert all("timed out" in out[i] for i in (0, 1, 4)), out
    assert out[-1] == "1 of 5 endpoints applied it"


@pytest.mark.slow
async def test_ctl_is_a_subcommand_of_the_cli(tmp_path: Path) -> None:
    config = tmp_path / "change.toml"
    config.write_text("[latency]\nttft_ms = 12\n")
    with trio.fail_after(LIMIT_S):
        async with running(corpus_articles=64) as server:
            args = ["ctl", "--url", server.base_url, "--config", str(config)]
            done = await trio.to_thread.run_sync(partial(run_cli, *args))
            assert done.returncode == 0, done.stderr
            assert f"ok     {server.base_url}: changed ttft_ms" in done.stdout
            assert server.settings.latency.ttft_ms == 12
            assert isinstance(server.settings, Settings)


# --- deploy/replicas: the headless Service and the watched files ---------------------------------


REPLICAS = Path(__file__).parent.parent / "deploy" / "replicas"


def manifest(name: str) -> dict[str, Any]:
    (doc,) = [doc for doc in yaml.safe_load_all((REPLICAS / name).read_text()) if doc]
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize("name", ["headless-service.yaml", "files-configmap.yaml"])
def test_replicas_manifests_validate(name: str) -> None:
    obj = manifest(name)
    version = ".".join(kubernetes_validate.latest_version().split(".")[:2])
    for release in ("1.30", version):
        kubernetes_validate.validate(obj, release, strict=True)


def test_the_watched_files_load_and_the_environment_does_not_outrank_them(
    tmp_path: Path,
) -> None:
    service = manifest("headless-service.yaml")["spec"]
    assert service["clusterIP"] == "None"
    assert service["selector"] == {"app.kubernetes.io/name": "trio-mock"}
    files = manifest("files-configmap.yaml")["data"]
    (tmp_path / "config.toml").write_text(files["config.toml"])
    (tmp_path / "scripts.json").write_text(files["scripts.json"])
    settings = Settings.load(env={}, config=tmp_path / "config.toml")
    assert settings.latency.ttft_ms == 200
    assert read_rules(str(tmp_path / "scripts.json")) == {"rules": []}
    overlay = manifest("kustomization.yaml")
    removed = {
        op["path"].removeprefix("/data/")
        for patch in overlay["patches"]
        if patch["target"]["kind"] == "ConfigMap"
        for op in yaml.safe_load(patch["patch"])
    }
    in_file = {KNOBS[name].env for name in flatten(tomllib.loads(files["config.toml"]), "file")}
    assert in_file <= removed


# --- PUT /_mock/scripts: the rules replaced at once ----------------------------------------------


def test_the_hub_replaces_the_rules_in_one_order() -> None:
    members = Members()
    members.ask(0, 1, "scripts.add", [{"reply": {"content": "old"}}])
    for worker, order in enumerate(members.orders()):
        members.done(worker, order, 1)
    members.answer(0)
    members.ask(1, 2, "scripts.replace", {"rules": [RULE, {"reply": {"content": "x"}}]})
    orders = members.orders()
    assert {order.op for order in orders} == {"scripts.replace"}
    assert [rule_id for rule_id, _, _ in orders[0].payload] == [2, 3]
    for worker, order in enumerate(orders):
        members.done(worker, order, 2)
    assert [rule["id"] for rule in members.answer(1).result] == [2, 3]
    assert [rule.id for rule in members.hub.scripts.rules] == [2, 3]
    members.ask(2, 3, "scripts.replace", [{"reply": {"status": 999}}])
    assert isinstance(members.answer(2).result, Exception)  # refused: no order sent
    assert not any(end.poll(0) for end in members.ends)
    assert [rule.id for rule in members.hub.scripts.rules] == [2, 3]


async def test_put_scripts_replaces_them_and_a_bad_rule_keeps_them() -> None:
    with trio.fail_after(LIMIT_S):
        async with (
            running(corpus_articles=64) as server,
            httpx.AsyncClient(base_url=server.base_url, timeout=10) as client,
        ):
            await client.post("/_mock/scripts", json={"reply": {"content": "old"}})
            answer = await client.put("/_mock/scripts", json={"rules": [RULE]})
            assert answer.status_code == 200, answer.text
            assert [r["reply"]["content"] for r in answer.json()["data"]] == ["scripted"]
            bad = await client.put("/_mock/scripts", json=[{"reply": {"status": 999}}])
            assert bad.status_code == 400
            listed = (await client.get("/_mock/scripts")).json()["data"]
            assert [r["reply"]["content"] for r in listed] == ["scripted"]
