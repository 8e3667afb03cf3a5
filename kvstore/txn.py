"""A typed transaction for the client library: compares, then success or failure ops.

    result = kv.txn().if_value("k", "=", b"old").then_put("k", b"new").else_get("k").commit()
    if not result.succeeded:
        current = result.results[0]  # TxnGet: the key as it is

``commit()`` sends one ``KV.Txn`` (atomic within one shard) and returns a ``TxnResult``; with
``AsyncClient`` it returns an awaitable of one. Rules, checked here before anything is sent
(``ValueError``): an operator is one of ``=`` ``!=`` ``<`` ``>``; a version or revision is an
integer within uint64; keys and values are bytes or str (str is UTF-8 encoded). A missing key
has version 0 and no value, so "absent" is ``if_version(key, "=", 0)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeAlias, TypeVar

from kvstore.v1 import kv_pb2

R = TypeVar("R")
CompareOp: TypeAlias = Literal["=", "!=", "<", ">"]

_OPS: dict[str, kv_pb2.Compare.Op] = {
    "=": kv_pb2.Compare.OP_EQUAL,
    "!=": kv_pb2.Compare.OP_NOT_EQUAL,
    "<": kv_pb2.Compare.OP_LESS,
    ">": kv_pb2.Compare.OP_GREATER,
}
_UINT64_MAX = (1 << 64) - 1


def _bytes(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else data


@dataclass(frozen=True, slots=True)
class TxnGet:
    """A get's answer: the key-value, or None when the key is absent."""

    kv: kv_pb2.KeyValue | None


@dataclass(frozen=True, slots=True)
class TxnPut:
    revision: int


@dataclass(frozen=True, slots=True)
class TxnDelete:
    deleted: bool
    revision: int


TxnOpResult: TypeAlias = TxnGet | TxnPut | TxnDelete


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnResult:
    """Whether every compare held, the shard's revision after the transaction, and one
    result per op of the branch that ran, in order."""

    succeeded: bool
    revision: int
    results: tuple[TxnOpResult, ...]

    @staticmethod
    def from_response(response: kv_pb2.TxnResponse) -> TxnResult:
        return TxnResult(
            succeeded=response.succeeded,
            revision=response.header.revision,
            results=tuple(_op_result(op) for op in response.responses),
        )


def _op_result(op: kv_pb2.ResponseOp) -> TxnOpResult:
    kind = op.WhichOneof("response")
    if kind == "get":
        return TxnGet(op.get.kv if op.get.found else None)
    if kind == "put":
        return TxnPut(op.put.header.revision)
    assert kind == "delete", op  # the server answers every op with one of the three
    return TxnDelete(op.delete.deleted, op.delete.header.revision)


class Txn(Generic[R]):
    """Built step by step; each method returns the builder itself. Each ``commit`` sends the
    transaction as built so far, as a new request (with a request id of its own)."""

    def __init__(self, commit: Callable[[kv_pb2.TxnRequest], R]) -> None:
        self._commit = commit
        self._request = kv_pb2.TxnRequest()

    # ------------------------------------------------------------------ compares

    def if_value(self, key: bytes | str, op: CompareOp, value: bytes | str) -> Txn[R]:
        """The key's value compared with ``value`` (false for an absent key)."""
        self._request.compare.append(
            kv_pb2.Compare(
                key=_bytes(key),
                target=kv_pb2.Compare.TARGET_VALUE,
                op=_op(op),
                value=_bytes(value),
            )
        )
        return self

    def if_version(self, key: bytes | str, op: CompareOp, version: int) -> Txn[R]:
        """Writes to the key since its creation (0: absent)."""
        return self._number(key, kv_pb2.Compare.TARGET_VERSION, op, version)

    def if_create_revision(self, key: bytes | str, op: CompareOp, revision: int) -> Txn[R]:
        return self._number(key, kv_pb2.Compare.TARGET_CREATE_REVISION, op, revision)

    def if_mod_revision(self, key: bytes | str, op: CompareOp, revision: int) -> Txn[R]:
        return self._number(key, kv_pb2.Compare.TARGET_MOD_REVISION, op, revision)

    def _number(
        self, key: bytes | str, target: kv_pb2.Compare.Target, op: CompareOp, n: int
    ) -> Txn[R]:
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= _UINT64_MAX:
            raise ValueError(f"a version or revision is an integer within 0..2**64-1, not {n!r}")
        self._request.compare.append(
            kv_pb2.Compare(key=_bytes(key), target=target, op=_op(op), number=n)
        )
        return self

    # ------------------------------------------------------------------ ops

    def then_put(self, key: bytes | str, value: bytes | str, *, lease: int = 0) -> Txn[R]:
        """``lease``: attach the key to this lease, as ``put(..., lease=)`` does."""
        self._request.success.append(_put(key, value, lease))
        return self

    def then_delete(self, key: bytes | str) -> Txn[R]:
        self._request.success.append(_delete(key))
        return self

    def then_get(self, key: bytes | str) -> Txn[R]:
        self._request.success.append(_get(key))
        return self

    def else_put(self, key: bytes | str, value: bytes | str, *, lease: int = 0) -> Txn[R]:
        """``lease``: attach the key to this lease, as ``put(..., lease=)`` does."""
        self._request.failure.append(_put(key, value, lease))
        return self

    def else_delete(self, key: bytes | str) -> Txn[R]:
        self._request.failure.append(_delete(key))
        return self

    def else_get(self, key: bytes | str) -> Txn[R]:
        self._request.failure.append(_get(key))
        return self

    # ------------------------------------------------------------------ sending

    def request(self) -> kv_pb2.TxnRequest:
        """The request as built so far (a copy: what ``commit`` would send)."""
        copy = kv_pb2.TxnRequest()
        copy.CopyFrom(self._request)
        return copy

    def commit(self) -> R:
        return self._commit(self.request())


def _op(op: str) -> kv_pb2.Compare.Op:
    if op not in _OPS:
        raise ValueError(f"compare with one of {', '.join(_OPS)}, not {op!r}")
    return _OPS[op]


def _put(key: bytes | str, value: bytes | str, lease: int) -> kv_pb2.RequestOp:
    return kv_pb2.RequestOp(
        put=kv_pb2.PutRequest(key=_bytes(key), value=_bytes(value), lease=lease)
    )


def _delete(key: bytes | str) -> kv_pb2.RequestOp:
    return kv_pb2.RequestOp(delete=kv_pb2.DeleteRequest(key=_bytes(key)))


def _get(key: bytes | str) -> kv_pb2.RequestOp:
    return kv_pb2.RequestOp(get=kv_pb2.GetRequest(key=_bytes(key)))
