"""The pytest plugin: the ``trio_mock_server`` fixture, the ``trio_mock`` marker and the
``trio_mock_settings`` fixture, proven by running small test suites in a subprocess.

What this file proves (each inner session runs in its own process, so its server threads
never mix with ours; inner sessions run with ``-W error`` and ``--strict-markers``):

- The plugin is found by its ``pytest11`` entry point named ``trio_mock`` (the session
  header lists ``trio-mock``; ``-p no:trio_mock`` removes fixture and marker), and
  ``pytest --markers`` documents the marker.
- The fixture serves a plain sync test through the official SDK (the README's example), a
  pytest-trio test through ``httpx.AsyncClient`` (the fixture's sync methods called inside
  the Trio task), and an anyio test on asyncio.
- The marker's knobs reach the replies (fixed text, a fixed length); module, class and
  function markers merge, the closest winning.
- Tests are isolated: a script and a config change made in one test are gone in the next,
  which starts with an empty journal and zeroed metrics.
- One server is shared by every test whose marker sets only live knobs (the same
  ``base_url`` across files); a start-up-only knob (``backlog``, ``port``) gets the test a
  server of its own, on the port asked for.
- A conftest overriding ``trio_mock_settings`` changes the defaults every test starts from,
  markers applying on top.
- An unknown knob, a bad value or a positional argument in the marker makes that test
  error with a message naming the problem, and the next test still gets a working server.
"""

from __future__ import annotations

import importlib.metadata

import pytest

from helpers import free_port

pytest_plugins = ["pytester"]

# Every inner session: no cache files in the test's directory, every warning an error
# (an unclosed socket is one), unregistered markers refused, and a summary line per test.
INNER_ARGS = ("-p", "no:cacheprovider", "-W", "error", "--strict-markers", "-ra")

# Records each test's server in servers.txt (the inner session's working directory).
RECORDING_CONFTEST = """
    import pytest


    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(item):
        server = item.funcargs.get("trio_mock_server")
        if server is not None:
            with open("servers.txt", "a", encoding="utf-8") as servers:
                servers.write(f"{item.name} {server.base_url}\\n")
        return (yield)
"""

# The README's example, as a user would paste it.
README_TEST = """
    import openai
    import pytest


    @pytest.mark.trio_mock(output_tokens_mean=8, output_tokens_distribution="fixed")
    def test_my_client(trio_mock_server):
        with openai.OpenAI(base_url=trio_mock_server.url, api_key="unused") as client:
            reply = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "Say hello."}],
            )

        assert reply.choices[0].message.content
        assert reply.usage.completion_tokens == 8
        (request,) = trio_mock_server.requests()
        assert request["model"] == "gpt-4o-mini"
        assert request["status"] == 200
"""

ASYNC_TESTS = """
    import asyncio

    import httpx
    import pytest
    import trio

    CHAT = {"model": "m", "messages": [{"role": "user", "content": "Say hello."}]}


    @pytest.mark.trio
    @pytest.mark.trio_mock(output_mode="fixed", fixed_text="Hello, Trio.")
    async def test_under_trio(trio_mock_server):
        trio.lowlevel.current_trio_token()  # raises outside a Trio run
        trio_mock_server.script({"reply": {"content": "Scripted in Trio."}, "times": 1})
        async with httpx.AsyncClient(base_url=trio_mock_server.url, timeout=10) as client:
            first = await client.post("/chat/completions", json=CHAT)
            second = await client.post("/chat/completions", json=CHAT)
        assert first.json()["choices"][0]["message"]["content"] == "Scripted in Trio."
        assert second.json()["choices"][0]["message"]["content"] == "Hello, Trio."
        entries = trio_mock_server.requests(endpoint="/chat/completions")
        assert [e["status"] for e in entries] == [200, 200]


    @pytest.fixture
    def anyio_backend():
        return "asyncio"


    @pytest.mark.anyio
    @pytest.mark.trio_mock(output_mode="fixed", fixed_text="Hello, asyncio.")
    async def test_under_asyncio(trio_mock_server):
        asyncio.get_running_loop()  # raises outside an asyncio loop
        async with httpx.AsyncClient(base_url=trio_mock_server.url, timeout=10) as client:
            reply = await client.post("/chat/completions", json=CHAT)
            assert trio_mock_server.configure(fixed_text="Changed live.") == ["fixed_text"]
            changed = await client.post("/chat/completions", json=CHAT)
        assert reply.json()["choices"][0]["message"]["content"] == "Hello, asyncio."
        assert changed.json()["choices"][0]["message"]["content"] == "Changed live."
        assert len(trio_mock_server.requests()) == 2
"""

MARKER_TESTS = """
    import httpx
    import pytest

    pytestmark = pytest.mark.trio_mock(output_mode="fixed", fixed_text="module")


    def answer(server):
        with httpx.Client(base_url=server.url, timeout=10) as client:
            body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
            reply = client.post("/chat/completions", json=body).json()
        return reply["choices"][0]["message"]["content"], reply["usage"]["completion_tokens"]


    def test_module_marker(trio_mock_server):
        assert answer(trio_mock_server)[0] == "module"


    @pytest.mark.trio_mock(fixed_text="class")
    class TestClassMarker:
        def test_class_over_module(self, trio_mock_server):
            assert answer(trio_mock_server)[0] == "class"

        @pytest.mark.trio_mock(fixed_text="function")
        def test_function_over_class(self, trio_mock_server):
            assert answer(trio_mock_server)[0] == "function"
            assert trio_mock_server.current_settings.output.output_mode == "fixed"


    @pytest.mark.trio_mock(
        output_mode="corpus", output_tokens_mean=5, output_tokens_distribution="fixed"
    )
    def test_function_over_module(trio_mock_server):
        text, tokens = answer(trio_mock_server)
        assert tokens == 5
        assert text != "module"
"""

ISOLATION_TESTS = """
    import httpx
    import pytest

    from trio_mock import Settings

    BODY = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}


    def answer(server):
        with httpx.Client(base_url=server.url, timeout=10) as client:
            reply = client.post("/chat/completions", json=BODY)
        assert reply.status_code == 200
        return reply.json()["choices"][0]["message"]["content"]


    def request_samples(server):
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            text = client.get("/metrics").text
        return [line for line in text.splitlines() if line.startswith("trio_mock_requests_total{")]


    def test_1_leaves_state_behind(trio_mock_server):
        assert trio_mock_server.requests() == []
        trio_mock_server.script({"reply": {"content": "scripted"}})
        assert answer(trio_mock_server) == "scripted"
        trio_mock_server.clear_scripts()
        trio_mock_server.configure(output_mode="fixed", fixed_text="configured")
        trio_mock_server.script({"reply": {"content": "scripted again"}})
        assert answer(trio_mock_server) == "scripted again"
        assert len(trio_mock_server.requests()) == 2


    def test_2_starts_clean(trio_mock_server):
        assert trio_mock_server.settings == Settings().replace(
            host="127.0.0.1", port=0, ttft_ms=0, itl_ms=0, embedding_ms=0,
            embedding_ms_per_token=0,
        )
        assert trio_mock_server.requests() == []
        assert trio_mock_server.scripts() == []
        assert trio_mock_server.current_settings == trio_mock_server.settings
        assert request_samples(trio_mock_server) == []
        assert answer(trio_mock_server) not in ("scripted", "scripted again", "configured")
        assert request_samples(trio_mock_server) == [
            'trio_mock_requests_total{endpoint="/chat/completions",model="other",status="200"} 1.0'
        ]


    @pytest.mark.trio_mock(backlog=16)
    def test_3_start_up_knob_gets_its_own_server(trio_mock_server):
        assert trio_mock_server.current_settings.server.backlog == 16
        assert answer(trio_mock_server)


    @pytest.mark.trio_mock(port=PORT)
    def test_4_port_marker(trio_mock_server):
        assert trio_mock_server.base_url == "http://127.0.0.1:PORT"
        assert answer(trio_mock_server)


    @pytest.mark.trio_mock(no_such_knob=1)
    def test_5_unknown_knob(trio_mock_server):
        pass


    @pytest.mark.trio_mock(ttft_ms=-3)
    def test_6_bad_value(trio_mock_server):
        pass


    @pytest.mark.trio_mock({"ttft_ms": 1})
    def test_7_positional(trio_mock_server):
        pass


    def test_8_after_the_errors(trio_mock_server):
        assert trio_mock_server.requests() == []
        assert answer(trio_mock_server)
"""

OVERRIDING_CONFTEST = """
    import pytest

    from trio_mock import Settings


    @pytest.fixture(scope="session")
    def trio_mock_settings():
        return Settings().replace(
            port=0, ttft_ms=0, itl_ms=0, corpus_articles=64,
            output_mode="fixed", fixed_text="From conftest.",
        )
"""

OVERRIDDEN_TESTS = """
    import httpx
    import pytest


    def answer(server):
        with httpx.Client(base_url=server.url, timeout=10) as client:
            body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
            return client.post("/chat/completions", json=body).json()["choices"][0]["message"]


    def test_conftest_defaults(trio_mock_server):
        assert answer(trio_mock_server)["content"] == "From conftest."
        assert trio_mock_server.current_settings.output.corpus_articles == 64


    @pytest.mark.trio_mock(fixed_text="Marker over conftest.")
    def test_marker_on_top(trio_mock_server):
        assert answer(trio_mock_server)["content"] == "Marker over conftest."


    def test_back_to_conftest_defaults(trio_mock_server):
        assert answer(trio_mock_server)["content"] == "From conftest."
        assert trio_mock_server.current_settings.latency.ttft_ms == 0
"""


def read_servers(pytester: pytest.Pytester) -> dict[str, str]:
    lines = (pytester.path / "servers.txt").read_text(encoding="utf-8").splitlines()
    return dict(line.split(" ", 1) for line in lines)


def test_entry_point_is_named_trio_mock() -> None:
    (entry,) = [
        e for e in importlib.metadata.entry_points(group="pytest11") if e.name == "trio_mock"
    ]
    assert entry.value == "trio_mock.pytest_plugin"
    assert entry.dist is not None
    assert entry.dist.name == "trio-mock"


def test_markers_lists_trio_mock(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--markers")
    result.stdout.fnmatch_lines(
        ["@pytest.mark.trio_mock(**knobs): settings for the trio_mock_server*"]
    )
    assert result.ret == 0
    blocked = pytester.runpytest_inprocess("-p", "no:trio_mock", "--markers")
    assert "trio_mock" not in blocked.stdout.str()


def test_fixture_is_gone_without_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_uses_it(trio_mock_server):\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:trio_mock", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'trio_mock_server' not found*"])
    result.stdout.no_fnmatch_line("plugins:*trio-mock*")


@pytest.mark.slow
def test_fixture_in_sync_trio_and_asyncio_tests_markers_and_isolation(
    pytester: pytest.Pytester,
) -> None:
    port = free_port()
    pytester.makeconftest(RECORDING_CONFTEST)
    pytester.makepyfile(
        test_readme=README_TEST,
        test_async=ASYNC_TESTS,
        test_markers=MARKER_TESTS,
        test_isolation=ISOLATION_TESTS.replace("PORT", str(port)),
    )

    result = pytester.runpytest_subprocess(*INNER_ARGS, "--trace-config")

    result.assert_outcomes(passed=12, errors=3)
    # --trace-config lists the plugins found by entry point, with their distribution.
    result.stdout.fnmatch_lines(["registered third-party plugins:", "*"])
    result.stdout.fnmatch_lines(["  trio-mock-* at */trio_mock/pytest_plugin.py"])
    result.stdout.fnmatch_lines(["plugins:*, trio-mock-*"])
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_5_unknown_knob*",
            "E *SettingsError: unknown setting 'no_such_knob'",
            "*ERROR at setup of test_6_bad_value*",
            "E *SettingsError: --ttft-ms (TRIO_MOCK_TTFT_MS): must be >= 0, got -3.0",
            "*ERROR at setup of test_7_positional*",
            "E *UsageError: @pytest.mark.trio_mock takes knobs by name, e.g. ttft_ms=50",
        ]
    )
    servers = read_servers(pytester)
    dedicated = {
        servers.pop("test_3_start_up_knob_gets_its_own_server"),
        servers.pop("test_4_port_marker"),
    }
    assert len(servers) == 10  # every other test that got as far as its body
    (shared,) = set(servers.values())
    assert shared not in dedicated
    assert f"http://127.0.0.1:{port}" in dedicated
    assert len(dedicated) == 2


@pytest.mark.slow
def test_conftest_overrides_the_settings(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(OVERRIDING_CONFTEST)
    pytester.makepyfile(test_overridden=OVERRIDDEN_TESTS)

    result = pytester.runpytest_subprocess(*INNER_ARGS)

    result.assert_outcomes(passed=3)
