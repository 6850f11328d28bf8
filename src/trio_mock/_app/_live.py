"""The app's current settings and everything built from them, changeable while serving.

A runtime change (``PATCH /_mock/config``) is checked by the same ``Settings`` schema as
start-up, then builds anew only what it touches and swaps the endpoints in one
assignment: requests that arrive later see the new settings, requests already running
finish with the ones they started with. The load model, the journal, the metrics and the
scripts outlive every change; rate-limit buckets and the fault generator are kept unless
their own knobs change. With several workers the supervisor checks a change
(``change_of``) and every worker ``adopt``s the result (``_hub``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from .._config._faults import FaultInjector
from .._config._knobs import SettingsError
from .._config._settings import KNOBS, describe, flatten
from .._observe._journal import Journal
from .._observe._logs import LEVELLED_LOGGERS
from .._observe._metrics import Metrics, multiprocess
from .._observe._observer import Observer
from .._openai._model import MockModel
from .._serve._auth import Auth
from .._serve._chat import ChatHandler
from .._serve._completions import CompletionsHandler
from .._serve._embeddings import EmbeddingsHandler
from .._serve._endpoint import Endpoint, Handler, Services
from .._serve._housekeeping import Watchdog
from .._serve._load import Load
from .._serve._offload import off_loop
from .._serve._pacing import Pacer
from .._serve._ratelimit import RateLimiter
from .._serve._realtime import RealtimeEndpoint
from .._serve._responses import ResponsesHandler
from .._serve._scripts import Scripts

if TYPE_CHECKING:
    from .._config._settings import Settings
    from .._serve._request import ASGIApp
    from .._sim._tokens import Tokenizer

log = logging.getLogger("trio_mock")
SECRETS = ("api_keys", "admin_key")  # shown masked by Settings.public()


def build_handlers(
    settings: Settings, model: MockModel, tokenizer: Tokenizer
) -> dict[str, Handler]:
    return {
        "/chat/completions": ChatHandler(model),
        "/completions": CompletionsHandler(model),
        "/responses": ResponsesHandler(model),
        "/embeddings": EmbeddingsHandler(settings, tokenizer),
    }


def change_of(old: Settings, leaves: dict[str, Any]) -> tuple[Settings, list[str]]:
    """The settings ``leaves`` make of ``old``, and the names of the knobs that change.

    Raises:
      SettingsError: an unknown knob, a bad value, or one read only at start-up.
    """
    shown = old.public()
    for name in SECRETS:  # the masked view sent back means "unchanged"
        if name in leaves and leaves[name] == shown[KNOBS[name].group][name]:
            del leaves[name]
    new = old.replace(**leaves)
    changed = changed_knobs(old, new)
    fixed = [name for name in changed if not KNOBS[name].live]
    if fixed:
        raise SettingsError(
            f"{describe(fixed[0])}: read at start-up only; restart the server to change it"
        )
    return new, changed


def changed_knobs(old: Settings, new: Settings) -> list[str]:
    return [k.name for k in KNOBS.values() if new.value(k.name) != old.value(k.name)]


def same_corpus(old: Settings, new: Settings) -> bool:
    a, b = old.output, new.output
    return (a.corpus_articles, a.corpus_seed) == (b.corpus_articles, b.corpus_seed)


class Live:
    """Settings, and the endpoints built from them, as of now."""

    def __init__(
        self, settings: Settings, tokenizer: Tokenizer, scripts: Scripts | None = None
    ) -> None:
        """Args:
          scripts: rules loaded already (the supervisor's, with several workers); else
            those of the scripts file, if any.

        Raises:
          SettingsError: the scripts file holds a bad rule.
        """
        obs = settings.observability
        self.settings = settings
        self.version = 0  # changes made so far (with several workers, the supervisor's count)
        self.tokenizer = tokenizer
        self.load = Load(settings.capacity, settings.latency)
        self.journal = Journal(obs.journal_size, obs.journal_file, obs.journal_body_bytes)
        self.metrics = Metrics(settings, self.load) if obs.metrics else None
        itl_s = settings.latency.itl_ms / 1000
        self.observer = Observer(self.journal, self.metrics, obs.log_raw, itl_s)
        self.scripts = scripts if scripts is not None else load_scripts(settings)
        self.model = MockModel(settings, tokenizer, offload=off_loop)
        self.limiter = RateLimiter(settings.rate_limits)
        self.faults = FaultInjector(settings.faults)
        self.watchdog = Watchdog()
        self.pacer = Pacer()
        self.routes: dict[str, ASGIApp] = {}
        self.changing = trio.Lock()
        self.build_routes()

    def build_routes(self) -> None:
        """Endpoints for the current settings, swapped in at once; each also without the
        /v1 prefix, as vLLM serves them."""
        settings = self.settings
        obs = settings.observability
        services = Services(
            settings=settings,
            load=self.load,
            auth=Auth(settings.server.api_keys, obs.admin_key, obs.metrics_auth),
            limiter=self.limiter,
            faults=self.faults,
            observer=self.observer,
            scripts=self.scripts,
            watchdog=self.watchdog,
            pacer=self.pacer,
        )
        self.auth = services.auth
        routes: dict[str, ASGIApp] = {}
        for path, handler in build_handlers(settings, self.model, self.tokenizer).items():
            endpoint = Endpoint(handler, services)
            routes |= {"/v1" + path: endpoint, path: endpoint}
        realtime = RealtimeEndpoint(self.model, services, self.tokenizer, self.latest_realtime)
        self.routes, self.sockets = routes, {"/v1/realtime": realtime, "/realtime": realtime}

    def latest_realtime(self) -> RealtimeEndpoint:
        return self.sockets["/v1/realtime"]

    async def update(self, data: Mapping[str, Any]) -> list[str]:
        """Apply knobs given flat or by group; return the names that changed.

        Raises:
          SettingsError: an unknown knob, a bad value, or one read only at start-up.
        """
        async with self.changing:  # one change at a time: each builds on the last
            return await self.apply(flatten(data, "config"))

    async def adopt(self, new: Settings, version: int) -> list[str]:
        """Take settings the supervisor checked (change number ``version``); return the
        names that changed here."""
        async with self.changing:
            changed = await self.install(new, changed_knobs(self.settings, new))
            self.version = version
            return changed

    async def apply(self, leaves: dict[str, Any]) -> list[str]:
        """Check every knob first, then rebuild only what the changed ones touch."""
        new, changed = change_of(self.settings, leaves)
        await self.install(new, changed)
        self.version += bool(changed)
        return changed

    async def install(self, new: Settings, changed: list[str]) -> list[str]:
        """Put ``new`` in force, building anew only what the ``changed`` knobs touch."""
        old = self.settings
        groups = {KNOBS[name].group for name in changed}
        if groups & {"output", "models", "latency"}:
            corpus = self.model.corpus if same_corpus(old, new) else None
            # A new corpus takes seconds to build: in a thread, so streams keep pace.
            self.model = await trio.to_thread.run_sync(
                partial(MockModel, new, self.tokenizer, corpus, off_loop)
            )
        if "rate_limits" in groups:
            started = self.limiter.started
            self.limiter = RateLimiter(new.rate_limits)
            self.limiter.start(started)
        if "faults" in groups:
            self.faults = FaultInjector(new.faults)
        self.load.configure(new.capacity, new.latency)
        obs = new.observability
        self.journal.resize(obs.journal_size)
        self.journal.body_limit = obs.journal_body_bytes
        self.observer.raw = obs.log_raw
        self.observer.lag.configure(new.latency.itl_ms / 1000)  # the lag warning's threshold
        if self.metrics is not None:
            self.metrics.configure(new)
        if "log_level" in changed:  # else an embedding program's own levels stand
            for logger in LEVELLED_LOGGERS:
                logging.getLogger(logger).setLevel(obs.log_level.upper())
        self.settings = new
        self.build_routes()
        if changed:
            log.info("runtime config changed: %s", ", ".join(changed))
        return changed

    async def reset(self, settings: Settings) -> None:
        """Back to ``settings`` with nothing remembered: no journal, no scripts, zeroed
        metrics, full rate-limit buckets, fault draws from their seed. What a server
        shared by many tests does between two of them.

        Raises:
          SettingsError: ``settings`` differs in a knob read only at start-up.
        """
        async with self.changing:
            await self.apply({name: settings.value(name) for name in KNOBS})
            self.limiter = RateLimiter(settings.rate_limits)
            self.limiter.start()
            self.faults = FaultInjector(settings.faults)
            if self.metrics is not None and not multiprocess():
                self.metrics = Metrics(settings, self.load)
                self.observer.metrics = self.metrics
            self.journal.clear()
            self.scripts.clear()
            self.build_routes()


def load_scripts(settings: Settings, scripts: Scripts | None = None) -> Scripts:
    """``scripts`` (new ones when None) with the scripts file's rules, if one is set.

    Raises:
      SettingsError: the file cannot be read or holds a bad rule.
    """
    scripts = Scripts() if scripts is None else scripts
    if path := settings.observability.scripts_file:
        try:
            scripts.load(path)
        except ValueError as error:
            raise SettingsError(f"{describe('scripts_file')}: {error}") from None
    return scripts
