"""The control routes: ``/metrics``, and under ``/_mock/`` the journal, the runtime config,
the scripted rules, the dashboard's figures and the dashboard itself.

With ``--admin-key`` set, ``/_mock/*`` and ``/configure`` need that key (Bearer,
``api-key`` or ``x-admin-key``); without it they take the API keys, like every route but
``/health``, ``/metrics`` and the dashboard page (which holds no data: it asks for it with
the key given in its URL fragment). ``--metrics-auth`` guards ``/metrics`` as a control
route. The keys are checked before any route runs (``_serve._auth``). Changes and the
journal go through ``Control``: with several workers, every worker's, and a change's
answer says which workers applied it (``workers``) and its number (``version``).
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

    from ._control import Control
    from ._messages import Change, Report

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


def reported(view: dict[str, Any], report: Report | None) -> dict[str, Any]:
    """``view``, and with several workers which of them applied the change."""
    return view if report is None else view | {"workers": report.to_data()}


def install_control_routes(app: QuartTrio, control: Control) -> None:
    dashboard = importlib.resources.files("trio_mock").joinpath("dashboard.html").read_bytes()
    live = control.live

    async def body_object() -> dict[str, Any]:
        data = await request.get_data()
        return parse_json(data if isinstance(data, bytes) else data.encode())

    async def change(leaves: dict[str, Any]) -> dict[str, Any]:
        try:
            done, report = await control.configure(leaves)
        except SettingsError as error:
            raise setting_error(error) from None
        return reported(config_view(done), report)

    def config_view(done: Change | None = None) -> dict[str, Any]:
        settings = live.settings if done is None else done.settings
        view: dict[str, Any] = {"settings": settings.public(), "start_up_only": start_up_only()}
        if done is not None:
            view["changed"] = done.changed
        if control.shared:  # and which worker answers
            view["version"] = live.version if done is None else done.version
            view["worker"] = control.worker
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
        return json_response(await change(await body_object()))

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
        view = await change(leaves)
        return json_response({"status": "configured", "ignored": ignored, **view})

    @app.get("/_mock/requests")
    async def list_requests() -> Response:
        found, report = await control.requests(
            model=request.args.get("model") or None,
            endpoint=request.args.get("endpoint") or None,
            status=query_number("status", int, 100),
            since=query_number("since", float, 0),
            limit=query_number("limit", int, 0),
        )
        return json_response(reported({"object": "list", "data": found}, report))

    @app.delete("/_mock/requests")
    async def clear_requests() -> Response:
        deleted, report = await control.clear_requests()
        return json_response(reported({"deleted": deleted}, report))

    @app.get("/_mock/scripts")
    async def list_scripts() -> Response:
        return json_response({"object": "list", "data": live.scripts.listing()})

    async def rules_body() -> Any:
        try:
            data = orjson.loads(await request.get_data())
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict | list):
            raise invalid('The body must be a rule, a list of rules, or {"rules": [...]}.')
        return data

    @app.post("/_mock/scripts")
    async def add_scripts() -> Response:
        added, report = await control.add_scripts(await rules_body())
        return json_response(reported({"object": "list", "data": added}, report))

    @app.put("/_mock/scripts")
    async def replace_scripts() -> Response:
        """All the rules at once (``trio-mock ctl --scripts-file``): no moment without them."""
        placed, report = await control.replace_scripts(await rules_body())
        return json_response(reported({"object": "list", "data": placed}, report))

    @app.delete("/_mock/scripts")
    async def clear_scripts() -> Response:
        deleted, report = await control.clear_scripts()
        return json_response(reported({"deleted": deleted}, report))

    @app.delete("/_mock/scripts/<int:rule_id>")
    async def delete_script(rule_id: int) -> Response:
        found, report = await control.remove_script(rule_id)
        if not found:
            raise OpenAIError(404, f"No rule with id {rule_id}.", code="not_found")
        return json_response(reported({"deleted": 1}, report))

    @app.get("/_mock/stats")
    async def stats() -> Response:
        if live.metrics is None:
            raise OpenAIError(404, "Metrics are off (--no-metrics).", code="not_found")
        return json_response({"time": time.time(), **live.metrics.stats()})

    @app.get("/_mock/ui")
    async def ui() -> Response:
        return Response(dashboard, content_type="text/html; charset=utf-8")
