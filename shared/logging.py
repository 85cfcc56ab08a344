"""structlog configuration: JSON lines on stdout, ids bound per message, secrets redacted.

Called once from each service's entry point; importing this module changes nothing.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

_SECRET_KEY = re.compile(r"(secret|password|passwd|api_key|apikey|token|authorization|credential)", re.I)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s:]+:[^/@\s]+@", re.I)


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    # Keys are names in code, a few dozen: each is searched once, not on every line.
    return _SECRET_KEY.search(key) is not None


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Drop values of secret-looking keys and passwords inside URLs, wherever they appear."""
    for key, value in list(event_dict.items()):
        if _is_secret_key(key):
            event_dict[key] = "[redacted]"
        elif isinstance(value, str) and "://" in value:
            event_dict[key] = _URL_USERINFO.sub(r"\g<scheme>[redacted]@", value)
    return event_dict


def _add_service(service: str) -> Processor:
    def add(_: WrappedLogger, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return add


def _tracebacks_without_locals() -> Processor:
    # structlog's dict_tracebacks renders every frame's local variables, and frames
    # of request handling and job running hold keys, secrets and request bodies.
    return structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))


def configure_logging(service: str, level: str = "INFO") -> None:
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, _tracebacks_without_locals(), structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    # Library loggers (aio-pika, uvicorn, pymongo) go through the same JSON renderer.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _tracebacks_without_locals(),
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
