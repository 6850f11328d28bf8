"""Logging set-up: one stderr handler, text or JSON lines, at the configured level.

The CLI calls ``configure_logging`` once; each ``--workers`` process calls it too, since
a spawned process starts with no handlers. Hypercorn's access log (``--access-log``) and
the raw request log (``--log-raw``, logger ``trio_mock.raw``) go through the same handler.
An embedding program keeps its own logging: ``serve()`` configures nothing.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from .._config._settings import Settings

LEVELLED_LOGGERS = ("trio_mock", "hypercorn.error")  # the ones --log-level sets
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# LogRecord's own attributes; anything else on a record came through ``extra=``.
STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line |= {k: v for k, v in vars(record).items() if k not in STANDARD}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(settings: Settings) -> None:
    """Route trio-mock's and Hypercorn's records to stderr in the configured format."""
    obs = settings.observability
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter() if obs.log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)  # other libraries: warnings and worse
    for name in LEVELLED_LOGGERS:
        logging.getLogger(name).setLevel(obs.log_level.upper())
    # Each is on only when asked for (--access-log, --log-raw), whatever the level.
    for name in ("hypercorn.access", "trio_mock.raw"):
        logging.getLogger(name).setLevel(logging.INFO)
