"""Locks and elections on leases, Txn and watches.

Rules:
- A lock (or an election) is one key, its name. A contender creates it in a Txn, "if the
  key has never been created (create revision 0), put it under my lease": whoever's Txn
  succeeds holds the lock (leads). If the holder dies, its lease ends and the key goes.
- A contender that lost the Txn watches the key from the revision its Txn read it at, until
  the key is deleted, then tries again (or stops, if its own lease ended meanwhile).
- The holder's **fencing token** is the key's create revision: the next holder's is
  strictly greater (one key lives in one shard, whose revisions only grow, across splits
  and merges too). A write guarded by ``if_create_revision(token.key, EQUAL, token)`` in a
  Txn is refused once the holder lost the lock, however long it was paused. Release and
  resign are such a guarded delete: a holder whose lease ended never deletes its successor.

Why not etcd's queue (one key per contender under ``NAME/``, the lowest create revision
holds): its order is one global revision. Here revisions are per shard, and a split inside
``NAME/`` would let two contenders in two shards each see themselves as the oldest. One key
is always in one shard. The cost is fairness: waiters race for the key when it goes, rather
than queue in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kvstore.client import AsyncClient
    from kvstore.leasing import Lease

DEFAULT_TTL_S = 10.0


class FencingToken(int):
    """The lock holder's token (an int: its key's create revision), with the key it guards
    (compare ``create_revision`` of ``key`` with the token in a Txn) and its lease."""

    key: bytes
    lease_id: int
    lost: asyncio.Event  # set once the lease under the lock ended (or may have)

    def __new__(cls, revision: int, key: bytes, lease_id: int) -> FencingToken:
        token = super().__new__(cls, revision)
        token.key = key
        token.lease_id = lease_id
        return token


def _key(name: bytes | str) -> bytes:
    raw = name.encode() if isinstance(name, str) else name
    if not raw:
        raise ValueError("a lock or election needs a name")
    return raw


async def _enter(client: AsyncClient, key: bytes, lease: Lease, value: bytes) -> FencingToken:
    """Create ``key`` under ``lease``, waiting for each holder before us to let it go."""
    while True:
        result = await (
            client.txn()
            .if_create_revision(key, "=", 0)
            .then_put(key, value, lease=lease.id)
            .else_get(key)
            .commit()
        )
        if result.succeeded:
            return FencingToken(result.revision, key, lease.id)
        await _deleted(client, key, after=result.revision, lease=lease)


async def _deleted(client: AsyncClient, key: bytes, *, after: int, lease: Lease) -> None:
    """Returns once ``key`` is deleted at a revision after ``after`` (the watch starts
    there, so a delete between our read and the watch is not missed)."""
    events = client.watch(key, end=key + b"\x00", start=after + 1)
    lost = asyncio.ensure_future(lease.lost.wait())
    try:
        while True:
            event = asyncio.ensure_future(events.__anext__())
            await asyncio.wait((event, lost), return_when=asyncio.FIRST_COMPLETED)
            if not event.done():
                event.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await event
                raise LockLostError(f"lease {lease.id} ended while waiting for {key!r}")
            if event.result().type == "DELETE":
                return
    finally:
        lost.cancel()
        await events.aclose()  # type: ignore[attr-defined]


async def _let_go(client: AsyncClient, token: FencingToken) -> None:
    """Delete the key if it is still ours (the lease's end would too, a bit later)."""
    await client.txn().if_create_revision(token.key, "=", token).then_delete(token.key).commit()


class LockLostError(Exception):
    """The lease under a lock or a candidacy ended: the holder may no longer hold it."""


@contextlib.asynccontextmanager
async def lock(
    client: AsyncClient, name: bytes | str, *, ttl_s: float = DEFAULT_TTL_S
) -> AsyncIterator[FencingToken]:
    """``async with client.lock(name) as token``: held inside the block (a lease of
    ``ttl_s`` keeps it while this process lives); released on exit."""
    key = _key(name)
    async with client.lease(ttl_s) as lease:
        token = await _enter(client, key, lease, b"")
        token.lost = lease.lost
        try:
            yield token
        finally:
            with contextlib.suppress(Exception):
                await _let_go(client, token)


class Election:
    """``Election(client, name)``: campaign, observe, resign, and ask who leads."""

    def __init__(self, client: AsyncClient, name: bytes | str, *, ttl_s: float = DEFAULT_TTL_S):
        self._client = client
        self._key = _key(name)
        self._ttl_s = ttl_s
        self._lease_cm: contextlib.AbstractAsyncContextManager[Lease] | None = None
        self.token: FencingToken | None = None  # ours, while we lead
        self._lease: Lease | None = None

    @property
    def lost(self) -> bool:
        """Our lease ended (or may have): we may no longer lead."""
        return self._lease is not None and self._lease.lost.is_set()

    async def campaign(self, proposal: bytes | str) -> FencingToken:
        """Returns once this contender leads (its token); others see ``proposal``."""
        value = proposal.encode() if isinstance(proposal, str) else proposal
        self._lease_cm = self._client.lease(self._ttl_s)
        lease = self._lease = await self._lease_cm.__aenter__()
        try:
            self.token = await _enter(self._client, self._key, lease, value)
        except BaseException:
            await self.resign()
            raise
        return self.token

    async def resign(self) -> None:
        """Stop leading (or contending): our key goes, the next contender leads."""
        token, self.token = self.token, None
        if token is not None:
            with contextlib.suppress(Exception):
                await _let_go(self._client, token)
        lease_cm, self._lease_cm = self._lease_cm, None
        if lease_cm is not None:
            await lease_cm.__aexit__(None, None, None)

    async def leader(self) -> bytes | None:
        """The current leader's proposal (None: nobody leads)."""
        kv = await self._client.get(self._key)
        return kv.value if kv is not None else None

    async def observe(self) -> AsyncIterator[bytes | None]:
        """The leader's proposal now, then each time the leader changes (None: nobody)."""
        client, key = self._client, self._key
        response = await client.get_response(key)
        last = response.kv.value if response.found else None
        yield last
        async for event in client.watch(key, end=key + b"\x00", start=response.header.revision + 1):
            now = event.value if event.type == "PUT" else None
            if now != last:
                last = now
                yield now
