"""The error taxonomy: every failure maps to one stable code that operators can query."""

from __future__ import annotations

from enum import StrEnum

from inventory_pipelines.core.redaction import redact


class ErrorCode(StrEnum):
    """Stable codes stored in `inventory_sync_runs.error_codes`; never rename a value."""

    AUTHENTICATION_FAILED = "authentication_failed"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    BAD_REQUEST = "bad_request"
    THROTTLED = "throttled"
    UNAVAILABLE = "unavailable"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    NETWORK_ERROR = "network_error"
    INVALID_RESPONSE = "invalid_response"
    INVALID_ITEM = "invalid_item"
    LOCK_HELD = "lock_held"
    RUN_ABANDONED = "run_abandoned"
    INTERNAL = "internal"


def error_code_for_status(status: int) -> ErrorCode:
    """Map a final (non-retried or retries exhausted) HTTP status to the taxonomy."""
    if status == 401:
        return ErrorCode.UNAUTHORIZED
    if status == 403:
        return ErrorCode.FORBIDDEN
    if status == 404:
        return ErrorCode.NOT_FOUND
    if status == 429:
        return ErrorCode.THROTTLED
    if status in (503, 504):
        return ErrorCode.UNAVAILABLE
    if 400 <= status < 500:
        return ErrorCode.BAD_REQUEST
    if status >= 500:
        return ErrorCode.SERVER_ERROR
    return ErrorCode.INVALID_RESPONSE


class InventoryError(Exception):
    """Root of the project's exceptions; the message is always redacted."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(redact(message))
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigurationError(InventoryError):
    """A setting is missing or malformed; the message names the setting and the fix."""


class ValidationError(InventoryError, ValueError):
    """Operator input (tenant id, selection, payload) is invalid."""


class GraphError(InventoryError):
    """A Graph request failed for good (after retries); carries what support needs."""

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode,
        status: int | None = None,
        graph_code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.graph_code = graph_code
        self.request_id = request_id

    def context(self) -> dict[str, object]:
        """Sanitized context for persistence: code, status, Graph code, request id, message."""
        return {
            "code": self.code.value,
            "status": self.status,
            "graph_code": self.graph_code,
            "request_id": self.request_id,
            "message": self.message,
        }

    def __repr__(self) -> str:
        return (
            f"GraphError(code={self.code.value!r}, status={self.status!r}, "
            f"graph_code={self.graph_code!r}, request_id={self.request_id!r})"
        )
