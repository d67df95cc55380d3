"""Reading `$batch` bodies answer by answer: both parsers give the same answers whatever the
chunking, and a body that is not a batch response, or breaks off, is told apart."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inventory_pipelines.graph.batch_stream import (
    BrokenBatchResponse,
    NotABatchResponse,
    iter_answers,
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False, width=64)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
answers = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.integers(0, 19).map(str),
            "status": st.sampled_from([200, 403, 429]),
            "headers": st.dictionaries(st.text(min_size=1), st.text(), max_size=2),
            "body": st.fixed_dictionaries(
                {"value": st.lists(st.dictionaries(st.text(), json_values, max_size=5))}
            ),
        }
    ),
    max_size=20,
)


def chunked(body: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@settings(max_examples=150, deadline=None)
@given(answers=answers, chunk=st.integers(1, 4096))
def test_streamed_and_whole_parsing_give_the_same_answers(
    answers: list[dict[str, Any]], chunk: int
) -> None:
    body = orjson.dumps({"responses": answers, "@odata.context": "x"})
    whole = list(iter_answers(chunked(body, chunk)))
    streamed = list(iter_answers(chunked(body, chunk), stream_after=0))
    assert whole == answers
    assert streamed == answers


def test_answers_are_handed_on_before_the_body_has_been_read() -> None:
    page = {"value": [{"id": str(i), "displayName": "x" * 200} for i in range(500)]}
    body = orjson.dumps(
        {"responses": [{"id": str(n), "status": 200, "body": page} for n in range(20)]}
    )
    read: list[int] = []

    def chunks() -> Iterator[bytes]:
        for part in chunked(body, 65_536):
            read.append(len(part))
            yield part

    stream = iter_answers(chunks(), stream_after=100_000)
    first = next(stream)
    assert first["id"] == "0"
    assert sum(read) < len(body) / 4  # most of the envelope is still on the wire
    assert [a["id"] for a in stream] == [str(n) for n in range(1, 20)]


@pytest.mark.parametrize("stream_after", [0, 1 << 20])
@pytest.mark.parametrize(
    "body", [b"<html>Batching is not supported</html>", b'{"value": []}', b"[1, 2]", b""]
)
def test_a_body_that_is_no_batch_response_says_so(body: bytes, stream_after: int) -> None:
    stream = iter_answers(iter([body]), stream_after=stream_after)
    if stream_after == 0 and body.startswith((b"{", b"[")):
        # Streamed, a valid document without `responses` simply has no answers.
        assert list(stream) == []
        return
    with pytest.raises(NotABatchResponse):
        list(stream)


def test_a_streamed_body_that_breaks_off_keeps_the_answers_before_the_break() -> None:
    body = orjson.dumps(
        {"responses": [{"id": str(n), "status": 200, "body": {"value": []}} for n in range(3)]}
    )
    cut = body[: body.index(b'"id":"2"')]
    stream = iter_answers(chunked(cut, 7), stream_after=0)
    assert [next(stream)["id"], next(stream)["id"]] == ["0", "1"]
    with pytest.raises(BrokenBatchResponse, match="after 2 answers") as broken:
        next(stream)
    assert broken.value.answered == 2


def test_a_whole_body_that_breaks_off_is_no_batch_response() -> None:
    body = orjson.dumps({"responses": [{"id": "0", "status": 200, "body": {"value": []}}]})
    with pytest.raises(NotABatchResponse):
        list(iter_answers(iter([body[:-3]])))
