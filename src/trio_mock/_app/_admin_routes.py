"""The control routes: ``/metrics``, and under ``/_mock/`` the journal, the runtime config,
the scripted rules, the dashboard's figures and the dashboard itself.

With ``--admin-key`` set, ``/_mock/*`` and ``/configure`` need that key (Bearer,
``api-key`` or ``x-admin-key``); without it they take the API keys, like every route but
``/health``, ``/metrics`` and the dashboard page (which holds no data: it asks for it with
the key given in its URL fragment). ``--metrics-auth`` guards ``/metrics`` as a control
route. The keys are checked before any route runs (``_serve._auth``).
"""

from __future__ import annotations

import importlib.resources
import math
import re
import time
from typing import TYPE_CHECKING, Any

import orjson
from quart import Response, request

from .._config._knobs import SettingsError
from .._config._settings import KNOBS
from .._config._tokenizer_models import tokenizer_sources
from .._observe._metrics import CONTENT_TYPE
from .._openai._convert import parse_json
from .._openai._errors import OpenAIError, invalid
from ._json_routes import json_response

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from ._runtime import Live

# AIPerf's mock names these in its POST /configure; both are milliseconds.
CONFIGURE_ALIASES = {"ttft": "ttft_ms", "itl": "itl_ms"}
CONFIGURE_IGNORED: frozenset[str] = frozenset()  # AIPerf's keys we take no notice of
FLAG = re.compile(r"--([a-z0-9-]+)")


def setting_error(error: SettingsError) -> OpenAIError:
    """A bad runtime setting, worded as at start-up; ``param`` is the knob's name."""
    found = FLAG.search(str(error))
    name = found.group(1).replace("-", "_") if found else None
    return invalid(str(error), name if name in KNOBS else None, "invalid_setting")


def query_number(name: str, kind: type, low: float) -> Any:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < low:
        raise invalid(f"Invalid '{name}': expected a number >= {low:g}, got {raw!r}.", name)
    return value


def preloaded(configured: tuple[str, ...], asked: Any) -> Any:
    """AIPerf's ``tokenizer_models`` (hub ids to pre-load) added to those configured, which
    keep their sources; anything but a list of names is left for the knob to refuse."""
    if not isinstance(asked, list) or not all(isinstance(name, str) for name in asked):
        return asked
    known = tokenizer_sources(configured)
    return [*configured, *(name for name in dict.fromkeys(asked) if name not in known)]


def start_up_only() -> list[str]:
    return [k.name for k in KNOBS.values() if not k.live]


def install_control_routes(app: QuartTrio, live: Live) -> None:
    dashboard = importlib.resources.files("trio_mock").joinpath("dashboard.html").read_bytes()

    async def body_object() -> dict[str, Any]:
        data = await request.get_data()
        return parse_json(data if isinstance(data, bytes) else data.encode())

    async def change(leaves: dict[str, Any]) -> list[str]:
        try:
            changed = await live.update(leaves)
        except SettingsError as error:
            raise setting_error(error) from None
        return changed

    def config_view(changed: list[str] | None = None) -> dict[str, Any]:
        view: dict[str, Any] = {
            "settings": live.settings.public(),
            "start_up_only": start_up_only(),
        }
        if changed is not None:
            view["changed"] = changed
        return view

    @app.get("/metrics")
    async def metrics() -> Response:
        if live.metrics is None:
            raise OpenAIError(404, "Metrics are off (--no-metrics).", code="not_found")
        return Response(live.metrics.exposition(), content_type=CONTENT_TYPE)

    @app.get("/_mock/config")
    async def get_config() -> Response:
        return json_response(config_view())

    @app.route("/_mock/config", methods=["PATCH", "POST"])
    async def change_config() -> Response:
        return json_response(config_view(await change(await body_object())))

    @app.post("/configure")
    async def configure() -> Response:
        data = await body_object()
        ignored = sorted(CONFIGURE_IGNORED & data.keys())
        leaves = {
            CONFIGURE_ALIASES.get(k, k): v for k, v in data.items() if k not in CONFIGURE_IGNORED
        }
        if "tokenizer_models" in leaves:
            configured = live.settings.models.tokenizer_models
            leaves["tokenizer_models"] = preloaded(configured, leaves["tokenizer_models"])
        changed = await change(leaves)
        return json_response({"status": "configured", "ignored": ignored, **config_view(changed)})

    @app.get("/_mock/requests")
    async def list_requests() -> Response:
        found = live.journal.select(
            model=request.args.get("model") or None,
            endpoint=request.args.get("endpoint") or None,
            status=query_number("status", int, 100),
            since=query_number("since", float, 0),
            limit=query_number("limit", int, 0),
        )
        return json_response({"object": "list", "data": found})

    @app.delete("/_mock/requests")
    async def clear_requests() -> Response:
        return json_response({"deleted": live.journal.clear()})

    @app.get("/_mock/scripts")
    async def list_scripts() -> Response:
        return json_response({"object": "list", "data": live.scripts.listing()})

    @app.post("/_mock/scripts")
    async def add_scripts() -> Response:
        try:
            data = orjson.loads(await request.get_data())
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict | list):
            raise invalid('The body must be a rule, a list of rules, or {"rules": [...]}.')
        added = live.scripts.add(data)
        return json_response({"object": "list", "data": [r.to_data() for r in added]})

    @app.delete("/_mock/scripts")
    async def clear_scripts() -> Response:
        return json_response({"deleted": live.scripts.clear()})

    @app.delete("/_mock/scripts/<int:rule_id>")
    async def delete_script(rule_id: int) -> Response:
        if not live.scripts.remove(rule_id):
            raise OpenAIError(404, f"No rule with id {rule_id}.", code="not_found")
        return json_response({"deleted": 1})

    @app.get("/_mock/stats")
    async def stats() -> Response:
        if live.metrics is None:
            raise OpenAIError(404, "Metrics are off (--no-metrics).", code="not_found")
        return json_response({"time": time.time(), **live.metrics.stats()})

    @app.get("/_mock/ui")
    async def ui() -> Response:
        return Response(dashboard, content_type="text/html; charset=utf-8")
