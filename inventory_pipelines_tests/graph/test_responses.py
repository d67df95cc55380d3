"""Parsing the bodies Graph really sends: pages with annotations, nested and Intune errors."""

from __future__ import annotations

import json

import pytest

from inventory_pipelines.graph.responses import (
    InvalidBodyError,
    parse_collection_page,
    parse_error_body,
)


def dump(value: object) -> bytes:
    return json.dumps(value).encode()


def test_annotations_before_value_count_and_tips_are_tolerated() -> None:
    body = (
        b'{"@odata.context":"https://graph.microsoft.com/beta/$metadata#x",'
        b'"@odata.count":2,"@microsoft.graph.tips":"Use $select",'
        b'"value":[{"id":"a"},{"id":"b","unknown":null}],'
        b'"@odata.nextLink":"https://graph.microsoft.com/beta/x?$skiptoken=Z"}'
    )
    parsed = parse_collection_page(body)
    assert [item["id"] for item in parsed.value] == ["a", "b"]
    assert parsed.next_link == "https://graph.microsoft.com/beta/x?$skiptoken=Z"


def test_unicode_and_very_long_strings_survive() -> None:
    name = "Richtlinie ✓ 政策 " + "x" * 100_000
    parsed = parse_collection_page(dump({"value": [{"id": "a", "displayName": name}]}))
    assert parsed.value[0]["displayName"] == name
    assert parsed.next_link is None


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"value": [{"id": "a"}',
        b"<html>Service Unavailable</html>",
        b"\xff\xfe\x00",
        b"[]",
        b'{"value": null}',
        b'{"value": {"id": "a"}}',
        b'{"error": {"code": "x"}}',
        b'{"value": [], "@odata.nextLink": 5}',
        b'{"value": [], "@odata.nextLink": ""}',
    ],
)
def test_bodies_that_are_not_pages_are_invalid(content: bytes) -> None:
    with pytest.raises(InvalidBodyError):
        parse_collection_page(content)


def test_graph_error_code_message_and_request_id() -> None:
    content = dump(
        {
            "error": {
                "code": "Forbidden",
                "message": "Missing scope DeviceManagementConfiguration.Read.All",
                "innerError": {"date": "2024-01-01T00:00:00", "request-id": "rid-1"},
            }
        }
    )
    detail = parse_error_body(content)
    assert detail.graph_code == "Forbidden"
    assert detail.message == "Missing scope DeviceManagementConfiguration.Read.All"
    assert detail.request_id == "rid-1"


def test_request_id_header_wins_and_nested_inner_errors_are_searched() -> None:
    nested = dump(
        {
            "error": {
                "code": "x",
                "message": "m",
                "innerError": {"innerError": {"request-id": "deep"}},
            }
        }
    )
    assert parse_error_body(nested).request_id == "deep"
    assert parse_error_body(nested, {"request-id": "hdr"}).request_id == "hdr"


def test_intune_json_inside_the_message_is_unwrapped() -> None:
    inner = {
        "_version": 3,
        "Message": "An internal server error has occurred - Operation ID: 1234 - "
        "Activity ID: abcd - Url: https://fef.msub03.manage.microsoft.com/x",
        "CustomApiErrorPhrase": "",
        "RetryAfter": None,
        "ErrorSourceService": "",
        "HttpHeaders": "{}",
    }
    content = dump({"error": {"code": "InternalServerError", "message": json.dumps(inner)}})
    detail = parse_error_body(content)
    assert detail.graph_code == "InternalServerError"
    assert detail.message is not None
    assert detail.message.startswith("An internal server error has occurred - Operation ID: 1234")
    assert detail.retry_after is None


def test_intune_retry_after_and_code_are_used_when_the_outer_code_is_missing() -> None:
    inner = json.dumps({"Message": "slow down", "RetryAfter": 7, "ErrorCode": "TooManyRequests"})
    detail = parse_error_body(dump({"error": {"message": inner}}))
    assert (detail.graph_code, detail.message, detail.retry_after) == (
        "TooManyRequests",
        "slow down",
        7,
    )


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"[1,2]", b'{"error": "string"}', b'{"error": {"message": "{bad"}}'],
)
def test_unparseable_error_bodies_never_raise(content: bytes) -> None:
    detail = parse_error_body(content, {"request-id": "hdr"})
    assert detail.request_id == "hdr"


def test_very_long_error_messages_are_shortened() -> None:
    detail = parse_error_body(dump({"error": {"code": "x", "message": "m" * 10_000}}))
    assert detail.message is not None
    assert len(detail.message) < 1_000
