"""Reading a `$batch` response body answer by answer, so an envelope is never held whole.

An envelope carries up to 20 pages of up to 999 items each (8–9 MB on the wire, over 20 MB
once parsed). Parsed whole, the envelopes of one round would sit in memory together and a
sync's peak memory would grow with the tenant. A small body (most of them) is still parsed
whole with orjson, the fastest parser; a body past `STREAM_AFTER_BYTES` is parsed
incrementally with ijson's C backend, and each answer is handed on as soon as it is complete.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import ijson

from inventory_pipelines.core import fast_json

STREAM_AFTER_BYTES = 256 << 10
"""Bodies up to this size are parsed whole (orjson); larger ones answer by answer (ijson)."""
FEED_BYTES = 64 << 10
"""The incremental parser gets at most this much at a time, so one feed completes about one
answer (a full page is several hundred KB) and parsed answers never pile up."""


class NotABatchResponse(ValueError):
    """The body is not a `$batch` response at all (e.g. a proxy's HTML page); nothing was
    handed on."""


class BrokenBatchResponse(ValueError):
    """The body broke off or turned invalid after some answers had been handed on."""

    def __init__(self, message: str, answered: int) -> None:
        super().__init__(message)
        self.answered = answered


def iter_answers(
    chunks: Iterable[bytes], *, stream_after: int = STREAM_AFTER_BYTES
) -> Iterator[dict[str, Any]]:
    """The answers (`responses[*]` objects) of a `$batch` body given as byte chunks, in body
    order. Raises NotABatchResponse when nothing usable came, BrokenBatchResponse when the
    body went bad after some answers."""
    pending = iter(chunks)
    head = bytearray()
    for chunk in pending:
        head += chunk
        if len(head) > stream_after:
            yield from _streamed(head, pending)
            return
    yield from _whole(bytes(head))


def _whole(body: bytes) -> Iterator[dict[str, Any]]:
    try:
        document = fast_json.loads(body)
    except ValueError:
        raise NotABatchResponse("the answer is not JSON") from None
    answers = document.get("responses") if isinstance(document, dict) else None
    if not isinstance(answers, list):
        raise NotABatchResponse("the answer has no list 'responses'")
    for answer in answers:
        if isinstance(answer, dict):
            yield answer


def _streamed(head: bytearray, rest: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    parsed: list[Any] = ijson.sendable_list()
    parser = ijson.items_coro(parsed, "responses.item", use_float=True)
    answered = 0
    try:
        for chunk in _chained(head, rest):
            parser.send(chunk)
            for answer in parsed:
                if isinstance(answer, dict):
                    answered += 1
                    yield answer
            del parsed[:]
        parser.close()
    except ijson.JSONError as exc:
        if answered == 0:
            raise NotABatchResponse(f"the answer is not a batch response ({exc})") from None
        raise BrokenBatchResponse(
            f"the $batch response broke off after {answered} answers ({exc})", answered
        ) from None
    for answer in parsed:  # completed by the document's end
        if isinstance(answer, dict):
            yield answer


def _chained(head: bytearray, rest: Iterator[bytes]) -> Iterator[bytes]:
    while head:
        yield bytes(head[:FEED_BYTES])
        del head[:FEED_BYTES]
    for chunk in rest:
        for start in range(0, len(chunk), FEED_BYTES):
            yield chunk[start : start + FEED_BYTES]
