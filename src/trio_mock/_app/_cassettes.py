"""The cassette's wiring: at start-up, the file to replay (``--cassette``) or the upstream to
record from (``--record-upstream``); per configuration, the replay stage or the proxy routes.

Record mode needs an HTTP client that runs under Trio: httpx (the ``record`` extra),
imported only when recording, so replaying needs nothing beyond trio-mock itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._config._knobs import SettingsError
from .._config._settings import describe
from .._openai._cassette import CassetteError
from .._serve._replay import Replayer, load_cassette

if TYPE_CHECKING:
    import httpx

    from .._config._settings import Settings
    from .._openai._cassette import Cassette
    from .._serve._exchange import Services
    from .._serve._request import ASGIApp

RECORDED_PATHS = ("/chat/completions", "/completions", "/responses", "/embeddings")


def replayed_cassette(settings: Settings) -> Cassette | None:
    """The cassette to replay, read whole; None when recording or without one.

    Raises:
      SettingsError: a line that is not a recording, named by file and line.
    """
    cassettes = settings.cassettes
    if cassettes.cassette is None or cassettes.record_upstream is not None:
        return None
    try:
        return load_cassette(cassettes.cassette, cassettes.replay_ignore)
    except CassetteError as error:
        raise SettingsError(f"{describe('cassette')}: {error}") from None


def upstream_client(settings: Settings) -> httpx.AsyncClient | None:
    """The client that forwards to the upstream in record mode, else None.

    Raises:
      SettingsError: no cassette to record into, or httpx is not installed.
    """
    if settings.cassettes.record_upstream is None:
        return None
    if settings.cassettes.cassette is None:
        raise SettingsError(f"{describe('record_upstream')}: needs --cassette to record into")
    try:
        import httpx  # only record mode needs it
    except ImportError:
        raise SettingsError(
            f"{describe('record_upstream')}: recording needs httpx: pip install 'trio-mock[record]'"
        ) from None
    timeout = httpx.Timeout(settings.cassettes.upstream_timeout_s)
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False)


def replayer(cassette: Cassette | None, settings: Settings) -> Replayer | None:
    return None if cassette is None else Replayer(cassette, settings.cassettes)


def proxy_routes(services: Services, client: httpx.AsyncClient | None) -> dict[str, ASGIApp]:
    """In record mode, the OpenAI routes of the generation endpoints, forwarded."""
    if client is None:
        return {}
    from .._serve._proxy import Proxy  # it imports httpx

    proxy = Proxy(client, services)
    return {prefix + path: proxy for path in RECORDED_PATHS for prefix in ("/v1", "")}
