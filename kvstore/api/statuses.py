"""The one table from what a node refuses with to the gRPC status a caller sees.

Rules:
- Refusals come from two places: the runtime raises (no leader here, a dropped proposal, a
  full queue, a command over a slot, a stopped node, a range that moved a key) and the state
  machine answers (a stale request id, a command it will not execute). Each maps to one
  status here and nowhere else, so a client in any language sees the same code for the same
  cause through every path (unary, Batch, BatchStream, a forwarded request, Admin).
- ``None`` means "not the caller's to see": the gateway retries it itself (a proposal
  dropped, a leader elsewhere, a key that moved) until the caller's deadline; what is left
  then is ``UNAVAILABLE``, which says whether a write's outcome is unknown.
"""

from __future__ import annotations

import grpc

from kvstore import compacted
from kvstore.model import ApplyResult, Invalid, Malformed, StaleRequest
from kvstore.model.commands import CounterSpent, LeaseGone
from kvstore.model.history import HistoryError, RevisionCompactedError
from kvstore.runtime.node import (
    CommandTooLargeError,
    NodeStoppedError,
    NotLeaderError,
    OverloadedError,
    ProposalDroppedError,
    RangeMovedError,
    UnknownShardError,
)

# Retried by the gateway, never shown as such: the request goes again (same request id).
RETRIED = (NotLeaderError, ProposalDroppedError, RangeMovedError)

_ERRORS: dict[type[Exception], grpc.StatusCode] = {
    CommandTooLargeError: grpc.StatusCode.INVALID_ARGUMENT,  # no slot will ever hold it
    OverloadedError: grpc.StatusCode.RESOURCE_EXHAUSTED,  # back off, then retry
    NodeStoppedError: grpc.StatusCode.UNAVAILABLE,  # another node will answer
    UnknownShardError: grpc.StatusCode.NOT_FOUND,
    HistoryError: grpc.StatusCode.OUT_OF_RANGE,  # compacted, or not reached yet (as etcd)
}


def history_refusal(exc: HistoryError) -> tuple[grpc.StatusCode, tuple[tuple[str, str], ...]]:
    """A read at a revision the shard cannot answer at: its status and trailers."""
    trailers: tuple[tuple[str, str], ...] = ()
    if isinstance(exc, RevisionCompactedError):
        trailers = compacted.trailer(exc.compacted)
    return shown_status(exc), trailers


def status_of_error(exc: Exception) -> grpc.StatusCode | None:
    """The status a runtime refusal shows as (None: retried, see ``RETRIED``)."""
    if isinstance(exc, RETRIED):
        return None
    for kind, code in _ERRORS.items():
        if isinstance(exc, kind):
            return code
    raise TypeError(f"no status for {type(exc).__name__}")  # a new refusal: add it above


def shown_status(exc: Exception) -> grpc.StatusCode:
    """``status_of_error`` for a refusal that is never retried here."""
    code = status_of_error(exc)
    assert code is not None, exc
    return code


def status_of_result(result: ApplyResult) -> tuple[grpc.StatusCode, str] | None:
    """The status a state machine's refusal shows as (None: not a refusal)."""
    if isinstance(result, StaleRequest):
        return (
            grpc.StatusCode.FAILED_PRECONDITION,
            f"request id is older than this client's latest ({result.latest_seq})",
        )
    if isinstance(result, Invalid):
        return grpc.StatusCode.INVALID_ARGUMENT, result.reason
    if isinstance(result, CounterSpent):
        return (
            grpc.StatusCode.FAILED_PRECONDITION,
            f"the counter is at {result.value}: the take would pass its limit 2^63-1",
        )
    if isinstance(result, Malformed):
        return grpc.StatusCode.INVALID_ARGUMENT, f"malformed command: {result.reason}"
    if isinstance(result, LeaseGone):
        return grpc.StatusCode.FAILED_PRECONDITION, f"lease {result.lease_id} has ended"
    return None
