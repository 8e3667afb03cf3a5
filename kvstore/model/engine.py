"""What the state machine needs from storage, and an in-memory implementation of it.

Rules:
- One ``Engine`` is one shard's view inside one write transaction: the caller commits (LMDB)
  or simply keeps (memory) everything the state machine did for one batch, atomically with
  the batch's ``applied_slot``, so a crash can never apply a slot twice.
- Data is stored by key, shared by every shard of a node (a shard's state machine keeps to
  its own span); metadata and the descriptor are the shard's own. ``sibling`` is another
  shard's view inside the same transaction (a split writes the new shard's state there).
- ``scan`` returns keys in bytewise order within ``[start, end)`` (``end == b""``: unbounded).
- History: every change of a key is also kept as a ``Version`` (its record after the
  change, or None for a delete) under the key and the change's revision, shared by every
  shard as the data is. ``history_at`` is the newest version at or before a revision;
  revisions of one key only grow (a split child starts at its parent's revision, a merge at
  the higher of the two), so a key's versions are its changes in order whatever shard made
  them. What to keep is the state machine's business (``kvstore.model.history``).
- ``MemoryEngine`` is the reference; the LMDB engine must pass the same contract tests.
  Several shards of one node share a ``MemoryStore``, keyed by key as LMDB is.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Protocol

_ABSENT = object()


@dataclass(frozen=True, slots=True)
class Record:
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0  # the lease the key is attached to (0: none): it goes when the lease does


@dataclass(frozen=True, slots=True)
class Version:
    """One change of ``key`` at ``revision``: the record it left, or None (a delete)."""

    key: bytes
    revision: int
    record: Record | None


class Engine(Protocol):
    def get(self, key: bytes) -> Record | None: ...

    def put(self, key: bytes, record: Record) -> None:
        """The key's record, which is also its version at ``record.mod_revision``."""
        ...

    def delete(self, key: bytes) -> None: ...

    def scan(self, start: bytes, end: bytes, limit: int) -> list[tuple[bytes, Record]]: ...

    def history_put(self, key: bytes, revision: int, record: Record | None) -> None: ...

    def history_at(self, key: bytes, revision: int) -> Version | None:
        """The newest version of ``key`` at or before ``revision``."""
        ...

    def history_after(self, key: bytes, revision: int) -> list[Version]:
        """The versions of ``key`` after ``revision``, oldest first."""
        ...

    def history_keys(self, start: bytes, end: bytes, limit: int) -> list[bytes]:
        """Keys in ``[start, end)`` with any version, in order (at most ``limit``; 0: all)."""
        ...

    def history_delete(self, key: bytes, revision: int) -> None: ...

    def meta_get(self, name: bytes) -> bytes | None: ...

    def meta_put(self, name: bytes, value: bytes) -> None: ...

    def meta_delete(self, name: bytes) -> None: ...

    def meta_scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]: ...

    def range_get(self) -> bytes | None: ...

    def range_put(self, raw: bytes) -> None: ...

    def range_delete(self) -> None: ...

    def sibling(self, shard_id: int) -> Engine: ...


class MemoryStore:
    """Every shard's state-machine data on one node, in memory, laid out as storage lays it
    out: keys stored by key, metadata and descriptors per shard."""

    def __init__(self) -> None:
        self._data: dict[bytes, Record] = {}
        self._keys: list[bytes] = []
        # key -> its versions, oldest first (a new tuple per change, so undo restores it)
        self._history: dict[bytes, tuple[Version, ...]] = {}
        self._history_keys: list[bytes] = []
        self._meta: dict[int, dict[bytes, bytes]] = {}
        self._ranges: dict[bytes, bytes] = {}  # shard id (8 bytes) -> its descriptor
        # While a transaction is open: how to undo each change, newest last.
        self._undo: list[tuple[dict[bytes, Any], bytes, Any]] | None = None

    def engine(self, shard_id: int) -> MemoryEngine:
        return MemoryEngine(self, shard_id)

    def ranges(self) -> dict[int, bytes]:
        """Every shard's recorded descriptor (what a node hosts, as it starts)."""
        return {int.from_bytes(k, "big"): v for k, v in sorted(self._ranges.items())}

    def begin(self) -> None:
        """Open a transaction: changes from now on can be rolled back (a crash before the
        commit) or kept (the commit)."""
        assert self._undo is None, "one transaction at a time"
        self._undo = []

    def commit(self) -> None:
        self._undo = None

    def rollback(self) -> None:
        undo, self._undo = self._undo or [], None
        for table, key, before in reversed(undo):
            ordered = self._ordered(table)
            if before is _ABSENT:
                if table.pop(key, None) is not None and ordered is not None:
                    del ordered[bisect.bisect_left(ordered, key)]
            else:
                if key not in table and ordered is not None:
                    bisect.insort(ordered, key)
                table[key] = before

    def _ordered(self, table: dict[bytes, Any]) -> list[bytes] | None:
        """The sorted key list kept beside ``table``, if it has one."""
        if table is self._data:
            return self._keys
        if table is self._history:
            return self._history_keys
        return None

    def _remember(self, table: dict[bytes, Any], key: bytes) -> None:
        if self._undo is not None:
            self._undo.append((table, key, table.get(key, _ABSENT)))


class MemoryEngine:
    """One shard's ``Engine`` over a ``MemoryStore`` (a store of its own when none is given)."""

    def __init__(self, store: MemoryStore | None = None, shard_id: int = 0) -> None:
        self._store = store if store is not None else MemoryStore()
        self._id = shard_id.to_bytes(8, "big")
        self._meta = self._store._meta.setdefault(shard_id, {})

    def get(self, key: bytes) -> Record | None:
        return self._store._data.get(key)

    def put(self, key: bytes, record: Record) -> None:
        store = self._store
        store._remember(store._data, key)
        if key not in store._data:
            bisect.insort(store._keys, key)
        store._data[key] = record
        self.history_put(key, record.mod_revision, record)  # as LMDB keeps the value once

    def delete(self, key: bytes) -> None:
        store = self._store
        store._remember(store._data, key)
        if store._data.pop(key, None) is not None:
            del store._keys[bisect.bisect_left(store._keys, key)]

    def scan(self, start: bytes, end: bytes, limit: int) -> list[tuple[bytes, Record]]:
        store = self._store
        out: list[tuple[bytes, Record]] = []
        for key in store._keys[bisect.bisect_left(store._keys, start) :]:
            if (end and key >= end) or (limit and len(out) >= limit):
                break
            out.append((key, store._data[key]))
        return out

    def history_put(self, key: bytes, revision: int, record: Record | None) -> None:
        store = self._store
        store._remember(store._history, key)
        versions = store._history.get(key)
        if versions is None:
            bisect.insort(store._history_keys, key)
            versions = ()
        kept = tuple(v for v in versions if v.revision != revision)
        at = bisect.bisect_left([v.revision for v in kept], revision)
        store._history[key] = (*kept[:at], Version(key, revision, record), *kept[at:])

    def history_at(self, key: bytes, revision: int) -> Version | None:
        versions = self._store._history.get(key, ())
        at = bisect.bisect_right([v.revision for v in versions], revision)
        return versions[at - 1] if at else None

    def history_after(self, key: bytes, revision: int) -> list[Version]:
        return [v for v in self._store._history.get(key, ()) if v.revision > revision]

    def history_keys(self, start: bytes, end: bytes, limit: int) -> list[bytes]:
        keys = self._store._history_keys
        out: list[bytes] = []
        for key in keys[bisect.bisect_left(keys, start) :]:
            if (end and key >= end) or (limit and len(out) >= limit):
                break
            out.append(key)
        return out

    def history_delete(self, key: bytes, revision: int) -> None:
        store = self._store
        versions = store._history.get(key)
        if versions is None or all(v.revision != revision for v in versions):
            return
        store._remember(store._history, key)
        kept = tuple(v for v in versions if v.revision != revision)
        if kept:
            store._history[key] = kept
        else:
            del store._history[key]
            del store._history_keys[bisect.bisect_left(store._history_keys, key)]

    def meta_get(self, name: bytes) -> bytes | None:
        return self._meta.get(name)

    def meta_put(self, name: bytes, value: bytes) -> None:
        self._store._remember(self._meta, name)
        self._meta[name] = value

    def meta_delete(self, name: bytes) -> None:
        self._store._remember(self._meta, name)
        self._meta.pop(name, None)

    def meta_scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        return sorted((k, v) for k, v in self._meta.items() if k.startswith(prefix))

    def range_get(self) -> bytes | None:
        return self._store._ranges.get(self._id)

    def range_put(self, raw: bytes) -> None:
        self._store._remember(self._store._ranges, self._id)
        self._store._ranges[self._id] = raw

    def range_delete(self) -> None:
        self._store._remember(self._store._ranges, self._id)
        self._store._ranges.pop(self._id, None)

    def sibling(self, shard_id: int) -> MemoryEngine:
        return MemoryEngine(self._store, shard_id)
