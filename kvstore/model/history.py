"""A shard's history: every change kept by key and revision, read at a past revision, and
forgotten below the compacted revision. Pure: works on any ``Engine``.

Rules:
- The state machine keeps a ``Version`` for every change it makes, in the same transaction
  as the change (``Engine.history_put``): the record it left, or None for a delete.
- A key's revisions only grow, whatever shard made them (a split child starts at its
  parent's revision, a merge at the higher of the two), so its versions are its changes in
  order, and "the key at revision R" is its newest version at or before R.
- A shard answers reads at a revision ``R`` with ``compacted <= R <= revision``: below, the
  versions may be gone (``RevisionCompactedError``); above, they do not exist yet
  (``FutureRevisionError``). Revisions are per shard: over a range merged after ``R``, a read at
  ``R`` sees each of the merged ranges as it was at its own revision ``R``.
- Garbage: for each key, the versions older than its newest at or before the compacted
  revision, and that one too if it is a delete. No read at or after the compacted revision
  needs them, so each node removes them when it likes (``collect``) and snapshots leave
  them out: what a replica answers never depends on how much it has collected.
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster.keys import KeySpan
from kvstore.model.commands import KeyValue
from kvstore.model.engine import Engine, Record, Version

_PAGE_KEYS = 256


class HistoryError(Exception):
    """A read names a revision the shard cannot answer at."""


class RevisionCompactedError(HistoryError):
    def __init__(self, revision: int, compacted: int) -> None:
        super().__init__(f"revision {revision} is compacted: history starts at {compacted}")
        self.revision = revision
        self.compacted = compacted


class FutureRevisionError(HistoryError):
    def __init__(self, revision: int, current: int) -> None:
        super().__init__(f"revision {revision} is ahead of the shard's revision {current}")
        self.revision = revision
        self.current = current


@dataclass(frozen=True, slots=True)
class Change:
    """One change a command made, for watchers: the record it left (None: deleted), the one
    before (None: the key was absent), and the span of the shard that made it, as it was
    then (None: a shard without a descriptor, holding every key)."""

    key: bytes
    revision: int
    record: Record | None
    prev: Record | None
    span: KeySpan | None = None


def check_readable(revision: int, compacted: int, current: int) -> None:
    if revision < compacted:
        raise RevisionCompactedError(revision, compacted)
    if revision > current:
        raise FutureRevisionError(revision, current)


def key_at(engine: Engine, key: bytes, revision: int) -> KeyValue | None:
    """``key`` as it was at ``revision`` (checked readable by the caller)."""
    version = engine.history_at(key, revision)
    if version is None or version.record is None:
        return None
    return key_value(key, version.record)


def scan_at(
    engine: Engine, start: bytes, end: bytes, revision: int, *, limit: int, bytes_max: int
) -> tuple[list[KeyValue], bool]:
    """The keys in ``[start, end)`` as they were at ``revision``, with ``limit`` and
    ``bytes_max`` as ``KvStateMachine.scan`` has them, and whether more exist."""
    out: list[KeyValue] = []
    size = 0
    while True:
        keys = engine.history_keys(start, end, _PAGE_KEYS)
        for key in keys:
            kv = key_at(engine, key, revision)
            if kv is None:
                continue
            if limit and len(out) >= limit:
                return out, True
            size += len(kv.key) + len(kv.value)
            if bytes_max and out and size > bytes_max:
                return out, True
            out.append(kv)
        if len(keys) < _PAGE_KEYS:
            return out, False
        start = keys[-1] + b"\x00"


def garbage(engine: Engine, key: bytes, compacted: int) -> list[int]:
    """The revisions of ``key``'s versions no read at or after ``compacted`` needs."""
    kept = engine.history_at(key, compacted)
    if kept is None:
        return []
    older = [v.revision for v in engine.history_after(key, -1) if v.revision < kept.revision]
    return older + ([kept.revision] if kept.record is None else [])


def needed(engine: Engine, key: bytes, compacted: int) -> list[Version]:
    """``key``'s versions a read at or after ``compacted`` may need, oldest first."""
    kept = engine.history_at(key, compacted)
    base = [kept] if kept is not None and kept.record is not None else []
    return base + engine.history_after(key, compacted)


def collect(
    engine: Engine, start: bytes, end: bytes, compacted: int, keys_max: int
) -> bytes | None:
    """Remove the garbage of up to ``keys_max`` keys from ``start`` on; the key to go on
    from, or None when ``[start, end)`` is clean."""
    keys = engine.history_keys(start, end, keys_max)
    for key in keys:
        for revision in garbage(engine, key, compacted):
            engine.history_delete(key, revision)
    if len(keys) < keys_max:
        return None
    return keys[-1] + b"\x00"


def key_value(key: bytes, record: Record) -> KeyValue:
    """What a read answers for ``key`` holding ``record``."""
    return KeyValue(key, record.value, record.create_revision, record.mod_revision, record.version)
