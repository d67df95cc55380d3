"""The `reset_connection` fault's mechanics: a response that stops half-way and drops the
connection, shared by plain GETs and `$batch` envelopes, and the log filter that keeps
uvicorn from reporting those intended resets as application errors."""

from __future__ import annotations

import logging

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class SimulatedConnectionReset(Exception):
    """Raised after half a body has been sent so the server drops the connection."""


class _SilenceSimulatedResets(logging.Filter):
    """Keep uvicorn from logging the intentional resets as application errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, SimulatedConnectionReset)


def install_reset_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _SilenceSimulatedResets) for f in logger.filters):
        logger.addFilter(_SilenceSimulatedResets())


class HalfBodyThenReset(Response):
    """Headers announce the full length; half the body follows; then the connection drops."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": self.raw_headers,
            }
        )
        half = bytes(self.body[: len(self.body) // 2])
        await send({"type": "http.response.body", "body": half, "more_body": True})
        raise SimulatedConnectionReset("simulated connection reset (fault reset_connection)")
