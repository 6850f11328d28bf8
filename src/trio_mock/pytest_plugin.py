"""The pytest plugin (registered through the ``pytest11`` entry point): a
``trio_mock_server`` fixture, a ``trio_mock`` marker for per-test settings, and a
``trio_mock_settings`` fixture a conftest overrides for the whole suite::

    @pytest.mark.trio_mock(ttft_ms=50, output_tokens_mean=8)
    def test_my_client(trio_mock_server):
        client = openai.OpenAI(base_url=trio_mock_server.url, api_key="unused")
        ...

The server runs in a thread of its own (``trio_mock.testing.MockServer``), so the same
fixture serves sync tests, pytest-trio tests and anyio/asyncio tests. One server is
shared by the session and reset before each test that uses it (its settings, journal,
scripts, metrics and rate-limit buckets), which keeps tests independent and fast; a marker
that sets a knob read only at start-up (``port``, ``workers``, ...) gets the test a server of
its own.

A suite can record its traffic once and replay it offline (in CI, say)::

    pytest --trio-mock-record https://api.openai.com/v1 --trio-mock-cassette tests/llm.jsonl
    pytest --trio-mock-cassette tests/llm.jsonl

When recording, the upstream's key comes from ``TRIO_MOCK_UPSTREAM_API_KEY`` (else the
key the client sends passes through); it is never written to the cassette.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from ._config._settings import KNOBS, Settings
from .testing import MockServer

MARKER = "trio_mock"

# Fast by default: a test asks for latency with the marker when it measures it.
TEST_DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 0,
    "ttft_ms": 0,
    "itl_ms": 0,
    "embedding_ms": 0,
    "embedding_ms_per_token": 0,
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("trio-mock")
    group.addoption(
        "--trio-mock-cassette",
        metavar="FILE",
        help="trio_mock_server replays its answers from this cassette (recorded ones first, "
        "then generated ones), or records into it with --trio-mock-record",
    )
    group.addoption(
        "--trio-mock-record",
        metavar="URL",
        help="trio_mock_server forwards to this OpenAI-compatible base URL and records each "
        "exchange into --trio-mock-cassette (key: TRIO_MOCK_UPSTREAM_API_KEY, or the client's)",
    )


def cassette_knobs(config: pytest.Config) -> dict[str, Any]:
    """The command line's cassette, as knobs.

    Raises:
      pytest.UsageError: --trio-mock-record without a cassette.
    """
    cassette = config.getoption("--trio-mock-cassette")
    upstream = config.getoption("--trio-mock-record")
    if upstream is None:
        return {} if cassette is None else {"cassette": cassette}
    if cassette is None:
        raise pytest.UsageError("--trio-mock-record needs --trio-mock-cassette to record into")
    key = os.environ.get("TRIO_MOCK_UPSTREAM_API_KEY")
    return {"cassette": cassette, "record_upstream": upstream, "upstream_api_key": key}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**knobs): settings for the trio_mock_server fixture in this test "
        "(leaf names as in trio_mock.Settings.replace, e.g. ttft_ms=50)",
    )


@pytest.fixture(scope="session")
def trio_mock_settings(pytestconfig: pytest.Config) -> Settings:
    """The settings every ``trio_mock_server`` starts from; override it in a conftest.

    Default: no latency, a free loopback port, the cassette given on the command line
    (``--trio-mock-cassette``, ``--trio-mock-record``), everything else as the CLI's defaults.
    """
    return Settings().replace(**TEST_DEFAULTS, **cassette_knobs(pytestconfig))


@pytest.fixture(scope="session")
def trio_mock_shared_server(trio_mock_settings: Settings) -> Iterator[MockServer]:
    """The session's shared server, reset by ``trio_mock_server`` before each use."""
    with MockServer(trio_mock_settings) as server:
        yield server


def marked_knobs(node: pytest.Item) -> dict[str, Any]:
    """The knobs of every ``trio_mock`` marker on the test, the closest winning (a
    function's over its class's over its module's)."""
    knobs: dict[str, Any] = {}
    for marker in reversed(list(node.iter_markers(MARKER))):
        if marker.args:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} takes knobs by name, e.g. ttft_ms=50")
        knobs |= marker.kwargs
    return knobs


@pytest.fixture
def trio_mock_server(
    request: pytest.FixtureRequest, trio_mock_settings: Settings
) -> Iterator[MockServer]:
    """A running trio-mock for this test: ``.url`` for the OpenAI SDK, ``.base_url``,
    ``.requests()`` (the journal), ``.configure(**knobs)``, ``.script(*rules)``."""
    knobs = marked_knobs(request.node)
    settings = trio_mock_settings.replace(**knobs) if knobs else trio_mock_settings
    if any(not KNOBS[name].live for name in knobs):
        with MockServer(settings) as own:
            yield own
        return
    shared: MockServer = request.getfixturevalue("trio_mock_shared_server")
    shared.reset(settings)
    yield shared
