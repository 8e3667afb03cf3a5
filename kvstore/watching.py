"""The client side of ``KV.Watch``: an async iterator of events that resumes by itself.

Rules:
- Each revision's last event carries the token of the position after that revision (the
  others have ""; a Txn's changes share a revision), so a token a reader stored is always
  exact: resuming from it (any node, any time within history) repeats and misses nothing.
- When the serving node goes away or ends the watch for a reason other than compaction,
  the iterator resumes from the last token on the next node (``targets``), with backoff,
  until ``resume_for_s`` passes without an answer. A start below a shard's compacted
  revision raises ``WatchCompactedError`` (the compacted revision in it); a refused create
  raises ``KvError`` with the status the refusal names (``INVALID_ARGUMENT``,
  ``RESOURCE_EXHAUSTED``); ``UNAVAILABLE`` (the node serves no replica of the range, or the
  watch fell behind) resumes elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import grpc

from kvstore.v1 import kv_pb2, kv_pb2_grpc

BACKOFF_S_MAX = 1.0


class WatchCompactedError(Exception):
    def __init__(self, compacted: int) -> None:
        super().__init__(f"the watch's start is compacted: history starts at revision {compacted}")
        self.compacted = compacted


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # "PUT" or "DELETE"
    key: bytes
    value: bytes  # b"" for a DELETE
    revision: int  # the change's (its mod_revision)
    shard: int
    token: str  # the position after this event's revision ("" but on its last event)
    create_revision: int = 0
    version: int = 0
    prev_value: bytes | None = None  # with prev_kv: the value before (None: absent/unknown)


async def watch(
    stub_for: Callable[[str], kv_pb2_grpc.KVStub],
    targets: Callable[[], Sequence[str]],
    create: kv_pb2.WatchCreateRequest,
    *,
    resume_for_s: float,
    on_progress: Callable[[str], None] | None = None,
    error: Callable[[grpc.StatusCode, str], Exception],
) -> AsyncIterator[WatchEvent]:
    """``error(code, details)``: the exception a refusal raises (the client's ``KvError``).
    ``on_progress``: told the token of each progress mark (nothing changed up to there)."""
    token = create.start_token
    attempt = 0
    backoff = 0.05
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    while True:
        addresses = list(targets())
        address = addresses[attempt % len(addresses)]
        attempt += 1
        request = kv_pb2.WatchCreateRequest()
        request.CopyFrom(create)
        if token:
            request.start_token = token
            request.start_revision = 0
        call = stub_for(address).Watch(iter([kv_pb2.WatchRequest(create=request)]))
        try:
            async for response in call:
                quiet_since = loop.time()
                backoff = 0.05
                if response.canceled:
                    if response.compact_revision:
                        raise WatchCompactedError(response.compact_revision)
                    name, _, details = response.cancel_reason.partition(": ")
                    code = getattr(grpc.StatusCode, name, grpc.StatusCode.UNKNOWN)
                    if code is not grpc.StatusCode.UNAVAILABLE:
                        raise error(code, details)
                    break  # resume elsewhere from the last token
                if response.created:
                    token = response.token or token
                    continue
                if not response.events:
                    token = response.token
                    if on_progress is not None:
                        on_progress(token)
                    continue
                for event in response.events:
                    yield _event(event, event.token)
                    token = event.token or token
        except grpc.aio.AioRpcError as err:
            if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                raise error(err.code(), err.details() or "") from None
        finally:
            call.cancel()
        if loop.time() - quiet_since > resume_for_s:
            where = f"resume from token {token}" if token else "no change seen yet"
            raise error(
                grpc.StatusCode.UNAVAILABLE,
                f"no node served the watch for {resume_for_s:g} s ({where})",
            )
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, BACKOFF_S_MAX)


def _event(event: kv_pb2.WatchEvent, token: str) -> WatchEvent:
    kv = event.kv
    deleted = event.type == kv_pb2.WatchEvent.DELETE
    return WatchEvent(
        type="DELETE" if deleted else "PUT",
        key=kv.key,
        value=kv.value,
        revision=kv.mod_revision,
        shard=event.shard_id,
        token=token,
        create_revision=kv.create_revision,
        version=kv.version,
        prev_value=event.prev_kv.value if event.HasField("prev_kv") else None,
    )
