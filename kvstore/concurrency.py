"""Locks and elections on leases and watches, as etcd's ``concurrency`` package builds them.

Rules:
- A contender writes one key under the name's prefix, ``NAME/<lease id in hex>``, attached
  to a lease of its own (``AsyncClient.lease``): if the contender dies, the lease ends and
  its key goes. Contenders are ordered by their key's create revision; the lowest holds
  the lock (or leads the election).
- A contender waits for exactly the keys created before its own to go: it lists them once,
  then watches the prefix from its own revision on for their deletes (nothing can be
  created before it any more), so it never misses a release and never polls.
- The holder's **fencing token** is its key's create revision: the next holder's is
  strictly greater (the same shard's revisions only grow, across splits and merges too).
  A write guarded by ``if_create_revision(token.key, EQUAL, token)`` in a Txn is refused
  once the holder lost the lock, however long it was paused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cluster.keys import prefix_end

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


@dataclass(frozen=True, slots=True)
class Contender:
    key: bytes
    value: bytes
    create_revision: int


def _prefix(name: bytes | str) -> bytes:
    raw = name.encode() if isinstance(name, str) else name
    if not raw:
        raise ValueError("a lock or election needs a name")
    return raw + b"/"


async def contenders(client: AsyncClient, prefix: bytes) -> list[Contender]:
    """Every key under ``prefix``, oldest first."""
    found: list[Contender] = []
    start, end = prefix, prefix_end(prefix)
    while True:
        items, more = await client.scan(start, end, 1000)
        found += [Contender(i.key, i.value, i.create_revision) for i in items]
        if not more or not items:
            break
        start = items[-1].key + b"\x00"
    return sorted(found, key=lambda c: c.create_revision)


async def _enter(client: AsyncClient, prefix: bytes, lease: Lease, value: bytes) -> FencingToken:
    """Write our key and wait until every key created before it is gone."""
    key = prefix + f"{lease.id:016x}".encode()
    put = await client.put(key, value, lease=lease.id)
    mine = put.header.revision
    before = {c.key for c in await contenders(client, prefix) if c.create_revision < mine}
    if before:
        events = client.watch(prefix, start=mine + 1)
        try:
            async for event in events:
                if event.type == "DELETE":
                    before.discard(event.key)
                if not before:
                    break
                if lease.lost.is_set():
                    raise LockLostError(f"lease {lease.id} ended while waiting for {prefix!r}")
        finally:
            await events.aclose()  # type: ignore[attr-defined]
    return FencingToken(mine, key, lease.id)


class LockLostError(Exception):
    """The lease under a lock or a candidacy ended: the holder may no longer hold it."""


@contextlib.asynccontextmanager
async def lock(
    client: AsyncClient, name: bytes | str, *, ttl_s: float = DEFAULT_TTL_S
) -> AsyncIterator[FencingToken]:
    """``async with client.lock(name) as token``: held inside the block (a lease of
    ``ttl_s`` keeps it while this process lives); released on exit."""
    prefix = _prefix(name)
    async with client.lease(ttl_s) as lease:
        token = await _enter(client, prefix, lease, b"")
        token.lost = lease.lost
        try:
            yield token
        finally:
            with contextlib.suppress(Exception):
                await client.delete(token.key)  # the lease's revoke would too, a bit later


class Election:
    """``Election(client, name)``: campaign, observe, resign, and ask who leads."""

    def __init__(self, client: AsyncClient, name: bytes | str, *, ttl_s: float = DEFAULT_TTL_S):
        self._client = client
        self._prefix = _prefix(name)
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
            self.token = await _enter(self._client, self._prefix, lease, value)
        except BaseException:
            await self.resign()
            raise
        return self.token

    async def resign(self) -> None:
        """Stop leading (or contending): our key goes, the next contender leads."""
        token, self.token = self.token, None
        if token is not None:
            with contextlib.suppress(Exception):
                await self._client.delete(token.key)
        lease_cm, self._lease_cm = self._lease_cm, None
        if lease_cm is not None:
            await lease_cm.__aexit__(None, None, None)

    async def leader(self) -> bytes | None:
        """The current leader's proposal (None: nobody leads)."""
        found = await contenders(self._client, self._prefix)
        return found[0].value if found else None

    async def observe(self) -> AsyncIterator[bytes | None]:
        """The leader's proposal now, then each time the leader changes (None: nobody)."""
        client, prefix = self._client, self._prefix
        # The shard's revision before the listing: every change after it is watched (one
        # the listing already shows is applied again, which changes nothing).
        before = (await client.get_response(prefix)).header.revision
        found = await contenders(client, prefix)
        alive = {c.key: c for c in found}
        last = found[0].value if found else None
        yield last
        async for event in client.watch(prefix, start=before + 1):
            if event.type == "DELETE":
                alive.pop(event.key, None)
            elif event.key not in alive:
                alive[event.key] = Contender(event.key, event.value, event.create_revision)
            else:
                old = alive[event.key]
                alive[event.key] = Contender(event.key, event.value, old.create_revision)
            first = min(alive.values(), key=lambda c: c.create_revision, default=None)
            now = first.value if first is not None else None
            if now != last:
                last = now
                yield now
