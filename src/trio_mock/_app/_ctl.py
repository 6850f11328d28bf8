"""``trio-mock ctl``: apply a config change or a scripts file to every replica at once.

The endpoints are the addresses a host name resolves to (a headless Kubernetes Service
resolves to every ready pod's IP) and any ``--url`` given. All of them get the change at
once, each from its own thread and within ``--timeout`` (both its requests together), and
a line each, in the order given, saying ok or why not; so a dead or slow endpoint costs
the others at most the timeout, however many there are. The exit status is 1 if any
failed. Rate limits and the journal stay each replica's own: this only steers them.
Stdlib at module level (httpx is imported when used), so the CLI's imports stay shallow.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import socket
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

Resolver = Callable[..., list[tuple[Any, ...]]]  # socket.getaddrinfo's shape
JOIN_MARGIN_S = 0.5  # past an endpoint's deadline, before it is reported as not answering


class CtlError(Exception):
    """A bad argument or file: reported in one line, exit status 2."""


def endpoints(
    hosts: Sequence[str],
    port: int,
    urls: Sequence[str],
    scheme: str = "http",
    resolve: Resolver = socket.getaddrinfo,
) -> list[str]:
    """Every base URL to steer: each address of each host, then ``urls``, once each.

    Raises:
      CtlError: a host that does not resolve.
    """
    found: list[str] = []
    for host in hosts:
        try:
            infos = resolve(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            raise CtlError(f"cannot resolve {host!r}: {error}") from None
        for family, *_, address in infos:
            ip = address[0]
            shown = f"[{ip}]" if family == socket.AF_INET6 else ip
            found.append(f"{scheme}://{shown}:{port}")
    found += [url.rstrip("/") for url in urls]
    return list(dict.fromkeys(found))


def settings_change(pairs: Sequence[str], config: str | None) -> dict[str, Any]:
    """The knobs to change: a TOML file's, then ``key=value`` pairs (the server parses
    the values, as it parses the environment's).

    Raises:
      CtlError: a pair without ``=``, or a file that cannot be read.
    """
    change: dict[str, Any] = {}
    if config:
        try:
            with open(config, "rb") as file:
                change |= tomllib.load(file)
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise CtlError(f"--config {config}: {error}") from None
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CtlError(f"--set {pair!r}: expected key=value")
        change[key.strip().replace("-", "_")] = value
    return change


def scripts_rules(path: str) -> Any:
    """A TOML (``[[rules]]``) or JSON scripts file, decoded; the servers check the rules.

    Raises:
      CtlError: the file cannot be read or decoded.
    """
    try:
        raw = pathlib.Path(path).read_bytes()
        return tomllib.loads(raw.decode()) if path.endswith(".toml") else json.loads(raw)
    except (OSError, ValueError) as error:
        raise CtlError(f"--scripts-file {path}: {error}") from None


def apply(
    client: httpx.Client, base: str, change: dict[str, Any] | None, rules: Any, deadline: float
) -> str:
    """Apply the change and replace the rules on one endpoint, by ``deadline`` (a
    ``time.monotonic()`` value); what it says back.

    Raises:
      httpx.HTTPError: the endpoint cannot be reached, answered an error, or is too slow.
    """
    done = []
    if change:
        sent = client.patch(f"{base}/_mock/config", json=change, timeout=left(deadline))
        answer = checked(sent)
        done.append("changed " + (", ".join(answer.get("changed", [])) or "nothing"))
    if rules is not None:
        answer = checked(client.put(f"{base}/_mock/scripts", json=rules, timeout=left(deadline)))
        done.append(f"{len(answer.get('data', []))} rules")
    return "; ".join(done)


def left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.001)  # 0 would mean no timeout to httpx


def steer_all(
    targets: Sequence[str],
    change: dict[str, Any] | None,
    rules: Any,
    headers: dict[str, str],
    timeout: float,
) -> list[tuple[bool, str]]:
    """Apply to every endpoint at once, each from its own thread and within ``timeout``;
    (ok, what it said or why not) for each, in the order of ``targets``."""
    import httpx

    deadline = time.monotonic() + timeout
    results: list[tuple[bool, str] | None] = [None] * len(targets)

    def steer(index: int, base: str) -> None:
        try:
            with httpx.Client(headers=headers) as client:
                results[index] = True, apply(client, base, change, rules, deadline)
        except httpx.HTTPError as error:
            results[index] = False, str(error) or type(error).__name__

    threads = [
        threading.Thread(target=steer, args=item, daemon=True) for item in enumerate(targets)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:  # daemons: one still stuck past the margin does not hold the exit
        thread.join(max(0.0, deadline + JOIN_MARGIN_S - time.monotonic()))
    silent = (False, f"no answer within {timeout:g} s")
    return [silent if result is None else result for result in results]


def checked(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a 2xx answer.

    Raises:
      httpx.HTTPStatusError: any other status, with the server's error message.
    """
    import httpx

    if not response.is_success:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise httpx.HTTPStatusError(
            f"{response.status_code}: {message}", request=response.request, response=response
        )
    body: dict[str, Any] = response.json()
    failed = (body.get("workers") or {}).get("failed")
    if failed:  # some workers of that replica did not apply it
        raise httpx.HTTPStatusError(
            f"not applied by workers {failed}", request=response.request, response=response
        )
    return body


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-mock ctl",
        description="Apply a config change or a scripts file to every replica: each address "
        "a host name resolves to (a headless Service's pods) and each --url. Rate limits "
        "and journals stay per replica.",
    )
    parser.add_argument("--host", action="append", default=[], help="resolve to all addresses")
    parser.add_argument("--port", type=int, default=8000, help="the replicas' port (--host)")
    parser.add_argument("--scheme", choices=["http", "https"], default="http")
    parser.add_argument("--url", action="append", default=[], help="a replica's root URL")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--config", metavar="FILE", help="TOML file of knobs to change")
    parser.add_argument("--scripts-file", metavar="FILE", help="rules that replace the rules")
    parser.add_argument("--admin-key", help="sent as x-admin-key (or TRIO_MOCK_ADMIN_KEY)")
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds for each endpoint (all at once)"
    )
    return parser


def ctl_main(argv: Sequence[str], resolve: Resolver = socket.getaddrinfo) -> int:
    """Run ``trio-mock ctl``; the exit status (1 if any endpoint failed, 2 for bad use)."""
    import os

    args = build_parser().parse_args(argv)
    try:
        change = settings_change(args.set, args.config)
        rules = scripts_rules(args.scripts_file) if args.scripts_file else None
        if not change and rules is None:
            raise CtlError("nothing to apply: give --set, --config or --scripts-file")
        targets = endpoints(args.host, args.port, args.url, args.scheme, resolve)
        if not targets:
            raise CtlError("no endpoint: give --host or --url")
    except CtlError as error:
        print(f"trio-mock ctl: error: {error}", file=sys.stderr)
        return 2
    key = args.admin_key or os.environ.get("TRIO_MOCK_ADMIN_KEY")
    headers = {"x-admin-key": key} if key else {}
    results = steer_all(targets, change, rules, headers, args.timeout)
    for base, (ok, said) in zip(targets, results, strict=True):
        print(f"{'ok   ' if ok else 'error'}  {base}: {said}")
    failures = sum(not ok for ok, _ in results)
    print(f"{len(targets) - failures} of {len(targets)} endpoints applied it")
    return 1 if failures else 0
