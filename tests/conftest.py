"""Shared pytest configuration: hooks first, fixtures below."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import openai
import pytest
import trio

from trio_mock import Settings, running
from trio_mock.testing import MockServer

if TYPE_CHECKING:
    from collections.abc import Generator

    import httpx

# Quick to start and instant to answer; tests override what they exercise.
FAST: dict[str, Any] = {
    "port": 0,
    "ttft_ms": 0,
    "itl_ms": 0,
    "embedding_ms": 0,
    "embedding_ms_per_token": 0,
    "corpus_articles": 64,
}


def only_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """Return the sole leaf exception of ``group``, searching nested groups.

    Returns:
      The one non-group exception if ``group`` (recursively) holds exactly one, else None.
    """
    if len(group.exceptions) != 1:
        return None
    (member,) = group.exceptions
    if isinstance(member, BaseExceptionGroup):
        return only_leaf(member)
    return member


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Unwrap the one-leaf group that pytest-trio 0.8 makes of every test failure.

    Since trio 0.25 each test body runs in a strict nursery, so without this a failure
    shows as an ExceptionGroup, ``xfail(raises=...)`` fails and ``pytest.skip`` loses
    its reason (STYLE.md section 6).
    """
    try:
        return (yield)
    except (pytest.skip.Exception, pytest.xfail.Exception) as outcome:
        # pytest-trio 0.8 turns a lone Skipped/XFailed leaf into a bare pytest.skip() or
        # pytest.xfail(), dropping its reason; the group it caught is the implicit context.
        context = outcome.__context__
        leaf = only_leaf(context) if isinstance(context, BaseExceptionGroup) else None
        if isinstance(leaf, type(outcome)):
            raise leaf from None
        raise
    except BaseExceptionGroup as group:  # pytest-trio 0.8 on trio >= 0.25
        leaf = only_leaf(group)
        if leaf is None:
            raise
        raise leaf from None


def fast_settings(**leaves: Any) -> Settings:
    """Settings for tests: port 0, no latency, a small corpus, then ``leaves``."""
    return Settings().replace(**(FAST | leaves))


StartServer = Callable[..., Awaitable[str]]


async def serve_running(
    settings: Settings, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """``trio_mock.running(settings)`` as a task for ``nursery.start``: reports the base URL,
    then serves until cancelled."""
    async with running(settings) as server:
        task_status.started(server.base_url)
        await trio.sleep_forever()


@pytest.fixture
async def start_server(nursery: trio.Nursery) -> StartServer:
    """Start trio-mock (``trio_mock.running``) on 127.0.0.1:0 in the test's nursery;
    returns its base URL.

    Call as ``url = await start_server(itl_ms=5)`` (knob leaf names) or with a ``Settings``.
    The server is cancelled with the test's nursery.
    """

    async def start(settings: Settings | None = None, **leaves: Any) -> str:
        settings = settings if settings is not None else fast_settings(**leaves)
        url: str = await nursery.start(serve_running, settings)
        return url

    return start


@contextmanager
def server_in_thread(settings: Settings | None = None, **leaves: Any) -> Generator[str]:
    """Run trio-mock in its own thread and Trio run (``trio_mock.testing.MockServer``), for
    synchronous clients. Yields the base URL; on exit the server shuts down gracefully."""
    with MockServer(settings if settings is not None else fast_settings(**leaves)) as server:
        yield server.base_url


# --- the official SDK and OpenAI-shaped errors, as the test files use them ----------------

SDK_TIMEOUT_S = 10.0
StreamItem = TypeVar("StreamItem")


def sync_client(url: str, prefix: str = "/v1") -> openai.OpenAI:
    """The sync SDK against ``url``: no retries, so a failure shows at once."""
    return openai.OpenAI(
        base_url=url + prefix, api_key="sk-test", max_retries=0, timeout=SDK_TIMEOUT_S
    )


def async_client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{url}/v1", api_key="sk-test", max_retries=0, timeout=SDK_TIMEOUT_S
    )


async def collect(stream: openai.AsyncStream[StreamItem]) -> list[StreamItem]:
    """Every item of an SDK stream, closing it."""
    async with stream:
        return [item async for item in stream]


def check_error(response: httpx.Response, status: int, param: str | None) -> dict[str, Any]:
    """An OpenAI-shaped ``invalid_request_error`` with ``status`` and ``param``; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    return error
