"""The live dashboard (``GET /_mock/ui``) in a real headless Chromium.

What this file proves:

- Loaded while a known load runs, the page polls ``/_mock/stats`` (``data-updates`` >= 2,
  no ``data-error``) and its header shows at least the requests sent before it loaded and
  at most all that were sent.
- Its screenshot has the TTFT (#4fc3f7), ITL (#81c784) and schedule lag (#e57373)
  histogram bars, found in the panels located in the image; a fresh server's dashboard,
  live too, has none.
- The page is self-contained: no URL to another host, no ``<script src>``, ``<link href>``,
  CSS ``url()`` or ``@import``; Chromium runs with every host name unresolvable.
- It opens without a key on a protected server, but its data fetch needs one: without a
  ``#key=`` fragment it shows the 401, with the right key it updates.

Without ``chromium`` on PATH these tests skip, or fail when ``CI_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import server_in_thread

pytestmark = pytest.mark.slow  # drives a headless Chromium

CHAT: dict[str, Any] = {
    "model": "trio-mock",
    "messages": [{"role": "user", "content": "Hi."}],
    "max_tokens": 16,
    "stream": True,
}
SENT_BEFORE = 12  # requests finished before the browser loads the page
LOAD_LIMIT = 300  # most requests the background load sends (the header stays below 1000)
BROWSER_TIMEOUT_S = 60
WINDOW = (1200, 1000)
# The page's palette (dashboard.html's :root): bars and lines, and the panels' background.
BLUE, GREEN, PANEL = (0x4F, 0xC3, 0xF7), (0x81, 0xC7, 0x84), (0x18, 0x20, 0x2B)
RED = (0xE5, 0x73, 0x73)
ADMIN_KEY = "adm-dashboard-key-0042"
T = TypeVar("T")


@pytest.fixture(scope="module")
def chromium() -> str:
    """The Chromium binary; skip without one (fail when CI requires it)."""
    found = shutil.which("chromium")
    if found is None:
        reason = "chromium is not on PATH: the dashboard cannot be rendered"
        if os.environ.get("CI_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}, and CI_REQUIRE_BROWSER=1")
        pytest.skip(reason)
    return found


def browse(chromium: str, tmp_path: Path, url: str, *mode: str) -> str:
    """Run headless Chromium on ``url`` for 4 s of virtual time (4-5 polls); its stdout.

    No host but 127.0.0.1 resolves, so a page needing anything from elsewhere breaks.
    """
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    args = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--virtual-time-budget=4000",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        *mode,
        url,
    ]
    process = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its helper processes share its group, killed together
    )
    try:
        out, err = process.communicate(timeout=BROWSER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)
        pytest.fail(f"chromium did not finish within {BROWSER_TIMEOUT_S} s: {args}")
    assert process.returncode == 0, err[-3000:]
    return out


def dom(chromium: str, tmp_path: Path, url: str) -> str:
    return browse(chromium, tmp_path, url, "--dump-dom")


def screenshot(chromium: str, tmp_path: Path, url: str, name: str) -> Path:
    path = tmp_path / name
    browse(chromium, tmp_path, url, f"--screenshot={path}")
    assert path.is_file(), f"no screenshot at {path}"
    return path


def both(*runs: Callable[[], T]) -> list[T]:
    """Run browsers side by side (each takes a second or two); their results in order."""
    with ThreadPoolExecutor(len(runs)) as pool:
        futures = [pool.submit(run) for run in runs]
        return [future.result(timeout=BROWSER_TIMEOUT_S + 15) for future in futures]


def body_data(page: str) -> dict[str, str]:
    """The ``data-*`` attributes of the rendered page's ``<body>``."""
    assert "<title>trio-mock dashboard</title>" in page, page[:2000]
    body = re.search(r"<body([^>]*)>", page)
    assert body is not None, page[:2000]
    return dict(re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1)))


def text_of(page: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', page)
    assert found is not None, f"no #{element_id} in the page"
    return found.group(1)


def number_of(shown: str) -> float:
    """A figure as the page prints it: ``987``, ``1.6k``, ``2.0M``."""
    scale = {"k": 1e3, "M": 1e6}.get(shown[-1:], 1.0)
    return float(shown.rstrip("kM")) * scale


def stream_chat(http: httpx.Client) -> None:
    with http.stream("POST", "/v1/chat/completions", json=CHAT) as response:
        assert response.status_code == 200
        body = b"".join(response.iter_bytes())
    assert body.endswith(b"data: [DONE]\n\n")


class Load:
    """Streamed chat requests sent one after another: ``sent`` finished, ``errors`` met."""

    def __init__(self) -> None:
        self.sent = 0
        self.errors: list[BaseException] = []
        self.stop = threading.Event()


@contextmanager
def background_load(url: str) -> Generator[Load]:
    """Stream chats at ``url`` from a thread until the block ends (at most LOAD_LIMIT)."""
    load = Load()

    def run() -> None:
        try:
            with httpx.Client(base_url=url, timeout=10) as http:
                while not load.stop.is_set() and load.sent < LOAD_LIMIT:
                    stream_chat(http)
                    load.sent += 1
        except Exception as error:  # reported by the test, not lost in the thread
            load.errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield load
    finally:
        load.stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive(), "the load thread did not stop"
    assert not load.errors, load.errors


@contextmanager
def loaded_server() -> Generator[tuple[str, Load]]:
    """A server that answered SENT_BEFORE streamed chats and is answering more."""
    with server_in_thread(ttft_ms=5, itl_ms=2) as url:
        with httpx.Client(base_url=url, timeout=10) as http:
            for _ in range(SENT_BEFORE):
                stream_chat(http)
        with background_load(url) as load:
            yield url, load


# --- what the page shows -------------------------------------------------------------------


def test_page_polls_stats_and_shows_request_count(chromium: str, tmp_path: Path) -> None:
    with loaded_server() as (url, load):
        page = dom(chromium, tmp_path, url + "/_mock/ui")
    data = body_data(page)
    assert "error" not in data, data
    assert int(data["updates"]) >= 2, data
    shown = number_of(text_of(page, "total-requests"))
    assert SENT_BEFORE <= shown <= SENT_BEFORE + load.sent
    # A token or more each; past 1000 the page rounds ("1.6k").
    assert number_of(text_of(page, "total-tokens")) >= SENT_BEFORE
    assert text_of(page, "statuses").startswith("200: ")
    assert text_of(page, "state").startswith("live, ")


class Box(NamedTuple):
    left: int
    top: int
    right: int
    bottom: int


def runs(flags: np.ndarray[Any, np.dtype[np.bool_]], shortest: int) -> list[tuple[int, int]]:
    """[start, end) of each run of True at least ``shortest`` long."""
    padded = np.concatenate(([False], flags, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [
        (int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= shortest
    ]


def panels(image: np.ndarray[Any, np.dtype[np.uint8]]) -> dict[str, Box]:
    """The six chart panels, found by their background colour, named in page order.

    The grid puts two 572-px columns in a 1200-px window: rps | tps, load | ttft, itl | lag.
    """
    mask = (image == PANEL).all(axis=2)
    columns = runs(mask.sum(axis=0) > 100, 100)
    boxes = [
        Box(left, top, right, bottom)
        for left, right in columns
        for top, bottom in runs(mask[:, left + 4], 100)  # the panel's padding, never drawn on
    ]
    boxes.sort(key=lambda b: (b.top, b.left))
    assert len(boxes) == 6, boxes
    return dict(zip(["rps", "tps", "load", "ttft", "itl", "lag"], boxes, strict=True))


def pixels(image: np.ndarray[Any, np.dtype[np.uint8]], box: Box, colour: tuple[int, ...]) -> int:
    region = image[box.top : box.bottom, box.left : box.right]
    return int((region == colour).all(axis=2).sum())


def read_png(path: Path) -> np.ndarray[Any, np.dtype[np.uint8]]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == WINDOW
        return np.asarray(image.convert("RGB"))


def test_screenshot_has_histogram_bars_absent_on_a_fresh_server(
    chromium: str, tmp_path: Path
) -> None:
    with loaded_server() as (url, _), server_in_thread(ttft_ms=5, itl_ms=2) as fresh_url:
        loaded_path, fresh_path = both(
            partial(screenshot, chromium, tmp_path, url + "/_mock/ui", "dashboard.png"),
            partial(screenshot, chromium, tmp_path, fresh_url + "/_mock/ui", "fresh.png"),
        )
    shutil.copyfile(loaded_path, "/tmp/dashboard.png")  # for a person to look at
    loaded, fresh = read_png(loaded_path), read_png(fresh_path)
    at, empty = panels(loaded), panels(fresh)
    # A bar at full height is ~24 x 180 px; the tallest bucket always reaches it.
    assert pixels(loaded, at["ttft"], BLUE) > 1000
    assert pixels(loaded, at["itl"], GREEN) > 1000
    assert pixels(loaded, at["lag"], RED) > 1000  # on time or late, every event has a bar
    assert pixels(fresh, empty["ttft"], BLUE) == 0
    assert pixels(fresh, empty["itl"], GREEN) == 0
    assert pixels(fresh, empty["lag"], RED) == 0
    # The fresh page was live all the same: the request-rate line runs along zero.
    assert pixels(fresh, empty["rps"], BLUE) > 0
    assert pixels(fresh, empty["tps"], GREEN) > 0


def test_page_is_self_contained() -> None:
    """Nothing from another host: the page works offline and leaks nothing to a CDN."""
    with server_in_thread() as url, httpx.Client(base_url=url, timeout=10) as http:
        response = http.get("/_mock/ui")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "<canvas" in html
    assert re.findall(r"https?://", html, re.IGNORECASE) == []
    for tag in re.findall(r"<(?:script|link|img|iframe|source)\b[^>]*>", html, re.IGNORECASE):
        assert not re.search(r"\b(?:src|href)\s*=", tag, re.IGNORECASE), tag
    assert not re.search(r"url\(|@import", html, re.IGNORECASE)
    fetched = re.findall(r"fetch\(\s*[\"'`]([^\"'`]+)", html)
    assert fetched == ["/_mock/stats"]


# --- a protected server --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leaves", "key"),
    [({"admin_key": ADMIN_KEY}, ADMIN_KEY), ({"api_keys": "sk-dash-1,sk-dash-2"}, "sk-dash-2")],
    ids=["admin_key", "api_keys"],
)
def test_page_opens_but_data_needs_the_key(
    chromium: str, tmp_path: Path, leaves: dict[str, Any], key: str
) -> None:
    with server_in_thread(**leaves) as url:
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/_mock/ui").status_code == 200
            assert http.get("/_mock/stats").status_code == 401
        without, wrong, right = map(
            body_data,
            both(
                partial(dom, chromium, tmp_path, url + "/_mock/ui"),
                partial(dom, chromium, tmp_path, url + "/_mock/ui#key=not-the-key"),
                partial(dom, chromium, tmp_path, f"{url}/_mock/ui#key={key}"),
            ),
        )
    assert without.get("error") == "HTTP 401", without
    assert "updates" not in without
    assert wrong.get("error") == "HTTP 401", wrong
    assert "error" not in right, right
    assert int(right["updates"]) >= 1, right
