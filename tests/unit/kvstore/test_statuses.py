"""Every refusal the runtime can raise has exactly one status (or is retried by the gateway),
and the state machine's refusals map as the README says."""

from __future__ import annotations

import inspect

import grpc

from cluster import RangeDescriptor
from kvstore.api.statuses import RETRIED, status_of_error, status_of_result
from kvstore.model import Invalid, Malformed, PutResult, StaleRequest
from kvstore.model.commands import CounterSpent, Taken
from kvstore.runtime import node as runtime_node


def test_every_runtime_refusal_has_a_status_or_is_retried() -> None:
    refusals = [
        cls
        for _, cls in inspect.getmembers(runtime_node, inspect.isclass)
        if issubclass(cls, Exception) and cls.__module__ == runtime_node.__name__
    ]
    assert len(refusals) >= 7
    for cls in refusals:
        exc = cls.__new__(cls)
        code = status_of_error(exc)
        assert (code is None) == isinstance(exc, RETRIED), cls
    moved = runtime_node.RangeMovedError(1, RangeDescriptor(1, b"", b"", (1,)))
    assert status_of_error(moved) is None
    assert status_of_error(runtime_node.OverloadedError()) == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_state_machine_refusals_map_as_documented() -> None:
    assert status_of_result(StaleRequest(4)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "request id is older than this client's latest (4)",
    )
    assert status_of_result(Invalid("no")) == (grpc.StatusCode.INVALID_ARGUMENT, "no")
    assert status_of_result(Malformed("x"))[0] == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[index]
    assert status_of_result(PutResult(1, None)) is None
    spent = status_of_result(CounterSpent(7))
    assert spent is not None and spent[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert status_of_result(Taken(0, 1, 1)) is None
