"""Learning each endpoint's largest `$top`: parsing Graph's refusal, narrowing, memory."""

from __future__ import annotations

import threading

import httpx
import pytest

from inventory_pipelines.core.errors import ErrorCode, GraphError
from inventory_pipelines.core.policy_types import get_policy_type
from inventory_pipelines.graph.page_size import (
    MIN_PAGE_SIZE,
    PageSizeMemory,
    is_top_refusal,
    smaller_top,
    top_limit_from_message,
)
from inventory_pipelines_tests.graph.mock_graph import (
    BASE,
    TENANT,
    MockGraph,
    graph_error,
    items,
    make_client,
    page,
)

CATALOG = get_policy_type("settings_catalog_policies")
PATH = CATALOG.url_path()
REFUSED = (
    "The limit of '{limit}' for Top query has been exceeded. "
    "The value from the incoming request is '{top}'."
)


def refusal(limit: int, top: int) -> httpx.Response:
    return graph_error(400, "BadRequest", REFUSED.format(limit=limit, top=top))


def queries(graph: MockGraph) -> list[str]:
    return [r.url.query.decode() for r in graph.graph_requests()]


# -- pure rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "limit"),
    [
        (REFUSED.format(limit=100, top=999), 100),
        ("the LIMIT OF '200' for top query has been exceeded.", 200),
        ("Invalid value '999' for $top query option found.", None),
        (None, None),
    ],
)
def test_the_limit_is_read_from_graphs_message(message: str | None, limit: int | None) -> None:
    assert top_limit_from_message(message) == limit


@pytest.mark.parametrize(
    ("status", "message", "refusal"),
    [
        (400, REFUSED.format(limit=100, top=999), True),
        (400, "Invalid value '999' for $top query option found.", True),
        (
            400,
            "The query specified in the URI is not valid. Query option '$top' is not allowed.",
            True,
        ),
        (400, "Bad request. (GET /beta/x?$top=999)", False),
        (403, REFUSED.format(limit=100, top=999), False),
        (400, None, False),
    ],
)
def test_only_a_400_blaming_top_is_a_refusal(
    status: int, message: str | None, refusal: bool
) -> None:
    assert is_top_refusal(status, message) is refusal


def test_smaller_top_takes_the_limit_else_halves_down_to_none() -> None:
    assert smaller_top(999, REFUSED.format(limit=100, top=999)) == 100
    assert smaller_top(100, REFUSED.format(limit=100, top=100)) == 50  # a limit that is no help
    sizes = [999]
    while sizes[-1]:
        sizes.append(smaller_top(sizes[-1], "Invalid value for $top query option"))
    assert sizes == [999, 499, 249, 124, 62, 31, 15, MIN_PAGE_SIZE, 0]


def test_memory_starts_from_the_registry_and_only_shrinks() -> None:
    memory = PageSizeMemory()
    assert memory.top_for(CATALOG) == 999
    assert memory.narrow(CATALOG, 999, REFUSED.format(limit=100, top=999)) == 100
    # A thread that was still at 999 learns the smaller size already known.
    assert memory.narrow(CATALOG, 999, "$top is too large") == 100
    assert memory.top_for(CATALOG) == 100
    assert memory.top_for(get_policy_type("mobile_apps")) == 999
    assert memory.learned() == {CATALOG.key: 100}
    memory.reset()
    assert memory.top_for(CATALOG) == 999


def test_memory_is_safe_across_threads() -> None:
    memory = PageSizeMemory()
    barrier = threading.Barrier(8)

    def narrow(limit: int) -> None:
        barrier.wait()
        memory.narrow(CATALOG, 999, REFUSED.format(limit=limit, top=999))

    threads = [threading.Thread(target=narrow, args=(100 + i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert memory.top_for(CATALOG) == 100


# -- the client -------------------------------------------------------------------------------


def test_a_refused_top_is_retried_with_the_limit_and_remembered() -> None:
    graph = (
        MockGraph()
        .on(f"{PATH}?$top=999", refusal(100, 999))
        .on(f"{PATH}?$top=100", page(items("a", 3), f"{BASE}{PATH}?$top=100&$skiptoken=p2"))
        .on(f"{PATH}?$top=100&$skiptoken=p2", page(items("b", 2)))
    )
    memory = PageSizeMemory()
    with make_client(graph, page_sizes=memory) as client:
        fetch = client.fetch(TENANT, CATALOG)
        assert fetch.top == 999
        pages = list(fetch)
        assert [len(p.items) for p in pages] == [3, 2]
        assert fetch.completed and fetch.top == 100
        assert (fetch.stats.pages, fetch.stats.requests, fetch.stats.retries) == (2, 3, 0)
        # The next fetch, of any tenant, starts at the learned size.
        again = client.fetch("22222222-2222-3333-4444-555555555555", CATALOG)
        assert again.top == 100
        list(again)
    assert queries(graph) == [
        "$top=999",
        "$top=100",
        "$top=100&$skiptoken=p2",
        "$top=100",
        "$top=100&$skiptoken=p2",
    ]
    assert memory.learned() == {CATALOG.key: 100}


def test_without_a_limit_in_the_message_the_size_is_halved() -> None:
    bad = graph_error(400, "BadRequest", "Invalid value '999' for $top query option found.")
    graph = (
        MockGraph()
        .on(f"{PATH}?$top=999", bad)
        .on(f"{PATH}?$top=499", bad)
        .on(f"{PATH}?$top=249", page(items("a", 2)))
    )
    with make_client(graph, page_sizes=PageSizeMemory()) as client:
        fetch = client.fetch(TENANT, CATALOG)
        assert len(list(fetch.iter_items())) == 2
    assert queries(graph) == ["$top=999", "$top=499", "$top=249"]


def test_a_top_refused_at_every_size_is_dropped_never_fatal() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("$top") is not None:
            return graph_error(400, "BadRequest", "Query option '$top' is not allowed.")
        return page(items("a", 4))

    graph = MockGraph().on(PATH, respond)
    memory = PageSizeMemory()
    with make_client(graph, page_sizes=memory) as client:
        fetch = client.fetch(TENANT, CATALOG)
        assert len(list(fetch.iter_items())) == 4
        assert fetch.completed and fetch.top is None
        assert client.fetch(TENANT, CATALOG).first_url == f"{BASE}{PATH}"
    assert queries(graph)[-1] == ""
    assert memory.learned() == {CATALOG.key: None}


def test_an_unrelated_400_still_fails_the_type() -> None:
    graph = MockGraph().on(f"{PATH}?$top=999", graph_error(400, "BadRequest", "Bad request."))
    with make_client(graph, page_sizes=PageSizeMemory()) as client:
        fetch = client.fetch(TENANT, CATALOG)
        with pytest.raises(GraphError) as info:
            list(fetch)
    assert info.value.code is ErrorCode.BAD_REQUEST
    assert queries(graph) == ["$top=999"]


def test_threads_of_many_tenants_share_what_one_learned() -> None:
    graph = (
        MockGraph()
        .on(f"{PATH}?$top=999", refusal(100, 999))
        .on(f"{PATH}?$top=100", page(items("a", 1)))
    )
    memory = PageSizeMemory()
    with make_client(graph, page_sizes=memory) as client:
        list(client.fetch(TENANT, CATALOG))
        tenants = [f"{i:08d}-2222-3333-4444-555555555555" for i in range(6)]
        threads = [
            threading.Thread(target=lambda t=t: list(client.fetch(t, CATALOG))) for t in tenants
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert queries(graph).count("$top=999") == 1
    assert queries(graph).count("$top=100") == 7
