"""Leases in the state machine: the lease table (the meta range's) and the keys attached to
leases (each data range's). Pure: works on any ``Engine``'s metadata.

Rules:
- A lease lives in the meta range (one table for the cluster, as a range never splits
  there): its id and TTL. When it ends (revoked, or expired by the meta leader's clock) it
  is kept as *ending* until every data range has detached its keys (``LeasesEnded``).
- A key names its lease in its record (``Record.lease``); each range also indexes its keys
  by lease (``lease/keys/<id><digest of the key>`` -> the key: names stay short whatever
  the key's length). ``DetachLease`` deletes a lease's keys the range holds at one revision
  and marks the lease dead there, so a put still on its way with that lease is refused
  (``LeaseGone``): a key is never left attached to an ended lease, and the meta range never
  grants an ended lease's id again (ids are the callers' random picks; the markers are a few
  bytes a lease, kept for good: left alone for now). The index is metadata:
  a split copies it to both halves (each deletes only keys it holds), a merge takes
  right's into left.
"""

from __future__ import annotations

import hashlib

from kvstore.model.engine import Engine

LIVE_PREFIX = b"lease/live/"  # meta: id -> TTL in ms
ENDING_PREFIX = b"lease/ending/"  # meta: id -> b""
ENDED_PREFIX = b"lease/ended/"  # meta: id -> b"" (an id is never granted twice)
KEYS_PREFIX = b"lease/keys/"  # data: id · digest of key -> key
DEAD_PREFIX = b"lease/dead/"  # data: id -> b""
TTL_MS_MAX = 1 << 40  # about 35 years: a TTL beyond it is a mistake
LEASE_ID_MAX = (1 << 63) - 1


def _id(lease_id: int) -> bytes:
    return lease_id.to_bytes(8, "big")


def _key_entry(lease_id: int, key: bytes) -> bytes:
    return KEYS_PREFIX + _id(lease_id) + hashlib.blake2b(key, digest_size=16).digest()


# ---------------------------------------------------------------------- the table (meta)


def live(engine: Engine) -> dict[int, int]:
    """Every live lease: id -> TTL in ms."""
    return {
        int.from_bytes(name[len(LIVE_PREFIX) :], "big"): int.from_bytes(ttl, "big")
        for name, ttl in engine.meta_scan(LIVE_PREFIX)
    }


def ending(engine: Engine) -> list[int]:
    """Leases that ended and may still have keys in some range."""
    return [
        int.from_bytes(name[len(ENDING_PREFIX) :], "big")
        for name, _ in engine.meta_scan(ENDING_PREFIX)
    ]


def ended(engine: Engine, lease_id: int) -> bool:
    """In the meta range: the lease was granted once and has ended (or is ending)."""
    markers = (ENDING_PREFIX, ENDED_PREFIX)
    return any(engine.meta_get(p + _id(lease_id)) is not None for p in markers)


def grant(engine: Engine, lease_id: int, ttl_ms: int) -> str | None:
    """Record a lease; why not (None: done)."""
    if not 0 < lease_id <= LEASE_ID_MAX:
        return f"lease id {lease_id} is not within 1..{LEASE_ID_MAX}"
    if not 0 < ttl_ms <= TTL_MS_MAX:
        return f"a TTL of {ttl_ms} ms is not within 1..{TTL_MS_MAX}"
    name = LIVE_PREFIX + _id(lease_id)
    if engine.meta_get(name) is not None:
        return f"lease {lease_id} exists"
    if ended(engine, lease_id):
        # The ranges refuse an ended lease for good: its id is never granted again.
        return f"lease id {lease_id} was used before"
    engine.meta_put(name, ttl_ms.to_bytes(8, "big"))
    return None


def revoke(engine: Engine, lease_id: int) -> bool:
    """End a lease; whether it was live."""
    name = LIVE_PREFIX + _id(lease_id)
    if engine.meta_get(name) is None:
        return False
    engine.meta_delete(name)
    engine.meta_put(ENDING_PREFIX + _id(lease_id), b"")
    return True


def forget(engine: Engine, lease_ids: tuple[int, ...]) -> None:
    for lease_id in lease_ids:
        if engine.meta_get(ENDING_PREFIX + _id(lease_id)) is not None:
            engine.meta_delete(ENDING_PREFIX + _id(lease_id))
            engine.meta_put(ENDED_PREFIX + _id(lease_id), b"")


# ---------------------------------------------------------------------- keys (data ranges)


def is_dead(engine: Engine, lease_id: int) -> bool:
    return engine.meta_get(DEAD_PREFIX + _id(lease_id)) is not None


def attach(engine: Engine, key: bytes, lease_id: int) -> None:
    engine.meta_put(_key_entry(lease_id, key), key)


def detach(engine: Engine, key: bytes, lease_id: int) -> None:
    engine.meta_delete(_key_entry(lease_id, key))


def attached(engine: Engine, lease_id: int) -> list[bytes]:
    """The keys this range indexed under the lease (some may be another range's now)."""
    return [key for _, key in engine.meta_scan(KEYS_PREFIX + _id(lease_id))]


def ended_here(engine: Engine, lease_id: int) -> None:
    """The lease's keys are gone here: drop its index, and refuse it from now on."""
    for name, _ in engine.meta_scan(KEYS_PREFIX + _id(lease_id)):
        engine.meta_delete(name)
    engine.meta_put(DEAD_PREFIX + _id(lease_id), b"")


def take_over(into: Engine, right: Engine) -> None:
    """A merge: the right range's index and dead leases become the merged range's."""
    for prefix in (KEYS_PREFIX, DEAD_PREFIX):
        for name, value in right.meta_scan(prefix):
            into.meta_put(name, value)
