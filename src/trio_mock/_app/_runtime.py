"""The app at run time: built from settings (``create_app``), with its live state
(``Live``): the current settings and everything built from them, changeable while serving.

A runtime change (``PATCH /_mock/config``) is checked by the same ``Settings`` schema as
start-up, then builds anew only what it touches and swaps the endpoints in one
assignment: requests that arrive later see the new settings, requests already running
finish with the ones they started with. The load model, the journal, the metrics and the
scripts outlive every change; rate-limit buckets and the fault generator are kept unless
their own knobs change. With several workers the supervisor checks a change
(``_config._changes``) and every worker ``adopt``s the result (``_hub``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from .._config._changes import change_of, changed_knobs
from .._config._faults import FaultInjector
from .._config._knobs import SettingsError
from .._config._settings import KNOBS, Settings, describe, flatten
from .._observe._journal import Journal
from .._observe._logs import LEVELLED_LOGGERS, configure_logging
from .._observe._metrics import Metrics, multiprocess
from .._observe._observer import Observer
from .._observe._spool import Spool, spool_path
from .._openai._errors import anthropic_error_body, openrouter_error_body
from .._openai._model import MockModel
from .._openai._openrouter import Prices
from .._serve._auth import Auth
from .._serve._chat import ChatHandler, OpenRouterChatHandler
from .._serve._completions import CompletionsHandler, OpenRouterCompletionsHandler
from .._serve._embeddings import EmbeddingsHandler
from .._serve._endpoint import Endpoint
from .._serve._exchange import Handler, Services, Stages, WithExtras
from .._serve._housekeeping import Trimmer, Watchdog
from .._serve._load import Load, SharedLoad
from .._serve._messages import AnthropicDialect, MessagesHandler
from .._serve._offload import off_loop
from .._serve._pacing import Pacer
from .._serve._ratelimit import RateLimiter
from .._serve._realtime import RealtimeEndpoint
from .._serve._responses import ResponsesHandler
from .._serve._scripts import Scripts, read_rules
from .._sim._corpus import release_free_memory
from .._sim._engine import engines_for
from .._sim._tokens import load_tokenizer
from ._admin_routes import install_control_routes
from ._anthropic_routes import install_anthropic_routes
from ._cassettes import proxy_routes, replayed_cassette, replayer, upstream_client
from ._control import Control, SharedControl
from ._json_routes import install_error_handlers
from ._quart_app import CorsApp, TrioMockApp, install_info_routes
from ._tokenizers import model_tokenizers
from ._vllm import install_vllm_routes
from ._watch import Watch

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from .._serve._arrivals import SharedArrivals
    from .._serve._buckets import SharedBuckets
    from .._serve._request import ASGIApp
    from .._serve._slots import SharedSlots
    from .._sim._tokens import Tokenizer
    from ._messages import Membership
    from ._watch import Sources

log = logging.getLogger("trio_mock")
HOUSEKEEPING_S = 0.25


def build_handlers(settings: Settings, model: MockModel) -> dict[str, Handler]:
    tokenizers = own_tokenizers(model)
    return {
        "/chat/completions": ChatHandler(model),
        "/completions": CompletionsHandler(model),
        "/responses": ResponsesHandler(model),
        "/embeddings": EmbeddingsHandler(settings, model.tokenizer, tokenizers),
    }


def build_openrouter_handlers(settings: Settings, model: MockModel) -> dict[str, Handler]:
    """The same APIs under OpenRouter's ``/api/v1``, in its dialect."""
    prices, models = Prices(settings.models.model_prices), settings.models
    embeddings = EmbeddingsHandler(settings, model.tokenizer, own_tokenizers(model))
    return {
        "/chat/completions": OpenRouterChatHandler(model, prices),
        "/completions": OpenRouterCompletionsHandler(model, prices),
        "/responses": WithExtras(ResponsesHandler(model), models, "keep"),
        "/embeddings": WithExtras(embeddings, models, "drop"),
    }


def own_tokenizers(model: MockModel) -> dict[str, Tokenizer]:
    """Model name -> its own tokenizer (``--tokenizer-models``)."""
    return {name: voice.tokenizer for name, voice in model.voices.items()}


def same_corpus(old: Settings, new: Settings) -> bool:
    a, b = old.output, new.output
    return (a.corpus_articles, a.corpus_seed) == (b.corpus_articles, b.corpus_seed)


class Live:
    """Settings, and the endpoints built from them, as of now."""

    def __init__(
        self,
        settings: Settings,
        tokenizer: Tokenizer,
        scripts: Scripts | None = None,
        buckets: SharedBuckets | None = None,
        shared: tuple[SharedSlots, SharedArrivals, int] | None = None,
    ) -> None:
        """Args:
          scripts: rules loaded already (the supervisor's, with several workers); else
            those of the scripts file, if any.
          buckets: the rate-limit levels a server's workers share; None keeps them here.
          shared: a worker's capacity slots, fault arrival count and number, which make
            capacity and fault draws the server's; None keeps them here.

        Raises:
          SettingsError: the scripts file holds a bad rule, or a model's own tokenizer
            cannot be loaded.
        """
        obs = settings.observability
        self.settings = settings
        self.version = 0  # changes made so far (with several workers, the supervisor's count)
        self.tokenizer = tokenizer
        self.shared = shared
        if shared is None:
            self.load = Load(settings.capacity, settings.latency)
        else:
            self.load = SharedLoad(settings.capacity, settings.latency, shared[0], shared[2])
        self.journal = Journal(obs.journal_size, obs.journal_file, obs.journal_body_bytes)
        self.metrics = Metrics(settings, self.load) if obs.metrics else None
        itl_s = settings.latency.itl_ms / 1000
        self.observer = Observer(self.journal, self.metrics, obs.log_raw, itl_s)
        self.scripts = scripts if scripts is not None else load_scripts(settings)
        self.tokenizers = model_tokenizers(settings.models)  # a model's own, by name
        self.model = MockModel(settings, tokenizer, offload=off_loop, tokenizers=self.tokenizers)
        self.engines = engines_for(settings.latency)  # start-up only: they outlive changes
        if self.metrics is not None:  # the caches outlive runtime changes, as the model's
            self.metrics.attach(self.model.prefix_caches, self.engines)
        self.buckets = buckets
        self.limiter = RateLimiter(settings.rate_limits, buckets)
        self.faults = self.fault_injector(settings)
        self.watchdog = Watchdog()
        self.pacer = Pacer()
        self.cassette = replayed_cassette(settings)  # outlives changes: its turns go on
        self.upstream = upstream_client(settings)
        self.routes: dict[str, ASGIApp] = {}
        self.changing = trio.Lock()
        self.build_routes()

    def fault_injector(self, settings: Settings) -> FaultInjector:
        """Fault draws numbered by this app's arrivals, or the server's (the hub restarts
        the count when the fault knobs change)."""
        arrivals = None if self.shared is None else self.shared[1].next
        return FaultInjector(settings.faults, arrivals)

    def build_routes(self) -> None:
        """Endpoints for the current settings, swapped in at once; each also without the
        /v1 prefix, as vLLM serves them, and under OpenRouter's /api/v1 in its dialect."""
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
            replayer=replayer(self.cassette, settings),
            engines=self.engines,
        )
        self.auth = services.auth
        routes: dict[str, ASGIApp] = {}
        for path, handler in build_handlers(settings, self.model).items():
            endpoint = Endpoint(Stages(handler, services), services)
            routes |= {"/v1" + path: endpoint, path: endpoint}
        for path, handler in build_openrouter_handlers(settings, self.model).items():
            stages = Stages(handler, services)
            routes["/api/v1" + path] = Endpoint(stages, services, openrouter_error_body)
        self.messages = MessagesHandler(self.model)  # count_tokens counts with it too
        messages = Stages(self.messages, services, AnthropicDialect())
        routes["/v1/messages"] = Endpoint(messages, services, anthropic_error_body)
        routes |= proxy_routes(services, self.upstream)
        realtime = RealtimeEndpoint(self.model, services, self.latest_realtime)
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
        tokenizers = self.tokenizers
        if "tokenizer_models" in changed:  # loaded (or refused) before anything changes
            tokenizers = await trio.to_thread.run_sync(model_tokenizers, new.models)
        groups = {KNOBS[name].group for name in changed}
        if groups & {"output", "models", "latency"}:
            corpus = self.model.corpus if same_corpus(old, new) else None
            # A new corpus takes seconds to build: in a thread, so streams keep pace.
            self.model = await trio.to_thread.run_sync(
                partial(
                    MockModel,
                    new,
                    self.tokenizer,
                    corpus,
                    off_loop,
                    tokenizers,
                    prefix_caches=self.model.prefix_caches,
                )
            )
        self.tokenizers = tokenizers
        if "rate_limits" in groups:
            started = self.limiter.started
            self.limiter = RateLimiter(new.rate_limits, self.buckets)  # the hub cleared them
            self.limiter.start(started)
        if "faults" in groups:
            self.faults = self.fault_injector(new)
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

    async def housekeeping(self, scope: trio.CancelScope) -> None:
        """Four times a second: streams past their time limit are cut (``Watchdog``); the
        journal file's lines reach the disk; batched metrics reach the registry, so a burst's
        figures do not wait for the next request or scrape (with several workers, each one's
        gauges too reach its files: any worker's /metrics sums them, so each must keep its own
        current even when another one is scraped); and once a burst is over, the memory it
        freed goes back to the system (``Trimmer``)."""
        watchdog, trimmer = self.watchdog, Trimmer(self.load)
        watchdog.running = True
        try:
            with scope:
                while True:
                    now = trio.current_time()
                    watchdog.expire(now)
                    self.journal.flush()
                    if self.metrics is not None:
                        self.metrics.flush()
                        if multiprocess():
                            self.metrics.refresh()
                    if trimmer.due(now):
                        await trimmer.trim(now)
                    await trio.sleep(HOUSEKEEPING_S)
        finally:
            watchdog.running = False

    async def reset(self, settings: Settings) -> None:
        """Back to ``settings`` with nothing remembered: no journal, no scripts, zeroed
        metrics, full rate-limit buckets, fault draws from their seed. What a server
        shared by many tests does between two of them.

        Raises:
          SettingsError: ``settings`` differs in a knob read only at start-up.
        """
        async with self.changing:
            await self.apply({name: settings.value(name) for name in KNOBS})
            self.limiter = RateLimiter(settings.rate_limits, self.buckets)
            self.limiter.start()
            if self.buckets is not None:
                self.buckets.clear()
            self.faults = self.fault_injector(settings)
            if self.metrics is not None and not multiprocess():
                self.metrics = Metrics(settings, self.load)
                self.metrics.attach(self.model.prefix_caches, self.engines)
                self.observer.metrics = self.metrics
            self.journal.clear()
            self.scripts.clear()
            self.build_routes()


def create_app(
    settings: Settings | None = None,
    membership: Membership | None = None,
    *,
    watch: Sources | None = None,
) -> TrioMockApp:
    """Build the app for ``settings`` (from the environment when None).

    Args:
      membership: a worker of ``--workers N``: its place in the state they share.
      watch: where ``settings`` came from, to apply changes to the config and scripts
        files while serving (``_watch``); None: the files are read at start-up only.

    Raises:
      SettingsError, TokenizerError: bad settings; the CLI reports them in one line.
    """
    settings = Settings.from_env() if settings is None else settings
    obs = settings.observability
    if obs.metrics_auth and obs.admin_key is None and not settings.server.api_keys:
        log.warning("--metrics-auth: no --admin-key or --api-keys set, so /metrics stays open")
    tokenizer = load_tokenizer(settings.output.tokenizer)

    origins = settings.server.cors_origins
    app = CorsApp("trio_mock", origins) if origins else TrioMockApp("trio_mock")
    if membership is None:
        live = app.live = Live(settings, tokenizer)
        app.control = Control(live)
    else:
        m = membership
        shared = None if m.slots is None or m.arrivals is None else (m.slots, m.arrivals, m.worker)
        live = app.live = Live(settings, tokenizer, m.scripts, m.buckets, shared)
        live.version = membership.version
        live.journal.worker = membership.worker
        if membership.spools is not None:
            live.journal.spool = Spool(spool_path(membership.spools, membership.worker))
        app.control = SharedControl(live, membership)
    install_info_routes(app, live, tokenizer)
    install_vllm_routes(app, lambda: live.settings, lambda model: live.model.tokenizer_for(model))
    install_control_routes(app, app.control)
    install_anthropic_routes(app, live)
    release_free_memory()  # the corpus build's temporaries are gone by now
    install_error_handlers(app)
    app.config["MAX_CONTENT_LENGTH"] = None  # ``front`` has read the body, within our limit

    chores, pacing, sharing = trio.CancelScope(), trio.CancelScope(), trio.CancelScope()
    looking = trio.CancelScope()  # the watch of the config and scripts files

    async def pace() -> None:
        with pacing:
            await live.pacer.run()

    async def watching(files: Watch) -> None:
        with looking:
            await files.run()

    async def share(control: SharedControl) -> None:
        with sharing:
            await control.run()

    @app.before_serving
    async def mark_start() -> None:
        live.limiter.start()  # rate_limit_after_s counts from here
        app.nursery.start_soon(live.housekeeping, chores)
        app.nursery.start_soon(pace)
        if isinstance(app.control, SharedControl):
            app.nursery.start_soon(share, app.control)
        scripts = settings.observability.scripts_file
        if watch is not None and (watch.config or scripts) and app.control.worker == 0:
            app.nursery.start_soon(watching, Watch(app.control, watch, scripts, read_rules))

    @app.after_serving
    async def close_journal() -> None:
        chores.cancel()  # else Quart-Trio waits BACKGROUND_TASK_SHUTDOWN_TIMEOUT for them
        pacing.cancel()
        sharing.cancel()
        looking.cancel()
        live.journal.close()
        if live.upstream is not None:
            await live.upstream.aclose()

    return app


SETTINGS_JSON = "TRIO_MOCK_SETTINGS_JSON"


def app_from_environment() -> QuartTrio:
    """Build the app for ``hypercorn -k trio trio_mock:app``.

    Exact settings may come as JSON in one variable (``TRIO_MOCK_SETTINGS_JSON``), else
    from the ``TRIO_MOCK_*`` variables. (The CLI's workers are forked with their settings.)
    """
    exact = os.environ.get(SETTINGS_JSON)
    settings = Settings.from_json(exact) if exact else Settings.from_env()
    if not logging.getLogger().handlers:  # a spawned worker, or a bare hypercorn
        configure_logging(settings)
    return create_app(settings)


TRIO_COMMAND = "hypercorn -k trio trio_mock:app"
NOT_TRIO = (
    f"trio-mock runs on Trio, not on this server's event loop: use `{TRIO_COMMAND}`"
    " (or the `trio-mock` command)"
)


class EnvironmentApp:
    """``trio_mock.app``: an ASGI app built from the environment on first use.

    Hypercorn finds ``app`` in the module's namespace, so it must exist at import; building
    the real app (tokenizer, corpus) only when served keeps ``import trio_mock`` cheap.

    Served by an asyncio server (plain ``hypercorn trio_mock:app``), it refuses at start-up
    with one line naming the Trio command: else Hypercorn would swallow the lifespan error
    and answer every request with an empty 500.
    """

    def __init__(self) -> None:
        self._app: QuartTrio | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not trio.lowlevel.in_trio_run():
            await refuse(scope, send)
            return
        if self._app is None:
            self._app = app_from_environment()
        await self._app(scope, receive, send)


async def refuse(scope: Mapping[str, Any], send: Any) -> None:
    """Stop an asyncio server before it serves: ``SystemExit`` leaves asyncio's loop at
    once and prints its one line. Should a server skip the lifespan, each request gets the
    line as a 500, never an empty one.
    """
    if scope["type"] == "lifespan":
        task = asyncio.current_task()
        if task is not None:  # retrieve the exit, else asyncio logs it again with a traceback
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
        raise SystemExit(NOT_TRIO)
    if scope["type"] == "http":
        body = NOT_TRIO.encode() + b"\n"
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        await send({"type": "http.response.start", "status": 500, "headers": headers})
        await send({"type": "http.response.body", "body": body})


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
