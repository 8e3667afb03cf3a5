"""``NodeStore``: the node's single LMDB environment, and the only importer of ``lmdb``.

Rules:
- Opened with LMDB's durable defaults (``sync=True``, ``metasync=True``, no ``map_async``): a
  write transaction is on disk when ``commit()`` returns. The runtime reports ``write_done``
  only after that (driver contract item 1).
- Group commit: one ``write()`` batch holds any number of Paxos records and state-machine
  applies for any number of shards, and commits them in one transaction, one fsync.
- A write transaction belongs to the thread that began it (LMDB); the runtime keeps all
  writes on one disk thread.
- ``DurableRecord`` means exactly what ``paxos.MemoryStorage`` says it means (contract test).
- A directory that belongs to another cluster or node is refused (``StoreIdentityError``).
- A directory remembers how its node joined: a founding member's replicas vote from the
  start; a node created later (a lost disk, a replacement) rejoins each group first, until
  the group's record says it votes (``DurableRecord.voting``; ``paxos.rejoin``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from kvstore.model.engine import Record, Version
from kvstore.storage import layout as L  # noqa: N812 - the layout reads best as L.xxx
from paxos import Ballot, DurableRecord, DurableState, LogEntry, Slot

T = TypeVar("T")

# kv keyed by key, each value kept once, in its version (layout.py); older ones are converted
FORMAT = b"kvstore-3"
FORMAT_VALUES_IN_KV = b"kvstore-2"  # values in the kv rows, no history
FORMAT_SHARD_KEYED = b"kvstore-1"  # also keyed by shard


MEMBER_PREFIX = b"member/"  # in the node table: a node that joined, as this node heard
REMOVED_PREFIX = b"removed/"  # ... and a node removed from the cluster


class StoreIdentityError(RuntimeError):
    """The data directory was created for another cluster or node."""


class StoreFullError(OSError):
    """LMDB's map is used up: the node cannot write until it is raised (its disk full)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """What ``NodeStore.claim`` found or made: a new directory or not, whether its node was
    a founding member (its replicas vote without rejoining), and its incarnation."""

    new: bool
    founding: bool
    incarnation: int


class NodeStore:
    def __init__(self, path: str | Path, *, map_size: int = 1 << 30) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        self._env = lmdb.open(
            str(path),
            map_size=map_size,
            max_dbs=len(L.DB_NAMES),
            sync=True,
            metasync=True,
            readahead=False,
        )
        self._dbs = {
            name: self._env.open_db(name, dupsort=name in L.DUPSORT_DBS) for name in L.DB_NAMES
        }
        # Until ``claim`` says otherwise (tests open stores without claiming them).
        self._founding = True

    def close(self) -> None:
        self._env.close()

    @property
    def founding(self) -> bool:
        """Made for the cluster and never lost its state (a replaced disk joins anew)."""
        return self._founding

    def claim(
        self,
        cluster_name: str,
        node_id: int,
        *,
        founding: bool,
        cluster_id: str | None = None,
        incarnation: int = 0,
    ) -> Identity:
        """Mark the directory as this node's, or refuse one that is someone else's.

        A new directory records whether it was created for a new cluster (``founding``: its
        replicas vote from the start) or not (it may hold a node whose disk was lost or
        replaced: its replicas rejoin before they vote, ``paxos.rejoin``), and the
        ``incarnation`` the caller drew for it. A directory from before these were recorded
        is an original member's."""
        want = {
            b"format": FORMAT,
            b"cluster": cluster_name.encode(),
            b"node_id": str(node_id).encode(),
        }
        if cluster_id is not None:
            want[b"cluster_id"] = cluster_id.encode()
        db = self._dbs[b"node"]
        with self._env.begin(write=True) as txn:
            new = txn.get(b"format", db=db) is None
            if txn.get(b"format", db=db) == FORMAT_SHARD_KEYED:
                _rekey_by_key(txn, self._dbs[b"kv"])
                txn.put(b"format", FORMAT_VALUES_IN_KV, db=db)
            if txn.get(b"format", db=db) == FORMAT_VALUES_IN_KV:
                _values_into_versions(txn, self._dbs)
                txn.put(b"format", FORMAT, db=db)
            for name, value in want.items():
                have = txn.get(name, db=db)
                if have is None:
                    txn.put(name, value, db=db)
                elif have != value:
                    raise StoreIdentityError(
                        f"{self._env.path()} holds {name.decode()}={have.decode()!r},"
                        f" not {value.decode()!r}: it belongs to another cluster or node"
                    )
            if new:
                txn.put(b"joined", b"founding" if founding else b"rejoining", db=db)
                txn.put(b"incarnation", str(incarnation).encode(), db=db)
            joined = txn.get(b"joined", db=db) or b"founding"
            raw = txn.get(b"incarnation", db=db)
        self._founding = joined == b"founding"
        return Identity(
            new=new, founding=self._founding, incarnation=int(raw) if raw is not None else 0
        )

    # ------------------------------------------------------------------ joined nodes

    def joined(self) -> tuple[int, str] | None:
        """The node id and cluster config (TOML) this directory joined with (``kvstore serve
        --join``), or None: a configured node's, or new."""
        with self._env.begin() as txn:
            node_id = txn.get(b"node_id", db=self._dbs[b"node"])
            config = txn.get(b"config", db=self._dbs[b"node"])
        if node_id is None or config is None:
            return None
        return int(node_id), config.decode()

    def save_config(self, text: str) -> None:
        with self._env.begin(write=True) as txn:
            txn.put(b"config", text.encode(), db=self._dbs[b"node"])

    def members(self) -> list[tuple[int, str, str]]:
        """The nodes that joined the cluster as this node last heard: (id, dc, address)."""
        out = []
        for node_id, raw in self._node_entries(MEMBER_PREFIX):
            dc, _, address = raw.decode().partition("\n")
            out.append((node_id, dc, address))
        return sorted(out)

    def removed(self) -> set[int]:
        """The nodes this node heard were removed from the cluster."""
        return {node_id for node_id, _ in self._node_entries(REMOVED_PREFIX)}

    def _node_entries(self, prefix: bytes) -> list[tuple[int, bytes]]:
        """The node table's entries ``prefix`` + node id: (node id, value)."""
        out = []
        with self._env.begin() as txn, txn.cursor(db=self._dbs[b"node"]) as cursor:
            if cursor.set_range(prefix):
                for key, raw in cursor:
                    if not key.startswith(prefix):
                        break
                    out.append((int(key[len(prefix) :]), bytes(raw)))
        return out

    def save_removed(self, node_id: int) -> None:
        with self._env.begin(write=True) as txn:
            txn.put(REMOVED_PREFIX + str(node_id).encode(), b"", db=self._dbs[b"node"])

    def save_member(self, node_id: int, dc: str, address: str) -> None:
        with self._env.begin(write=True) as txn:
            txn.put(
                MEMBER_PREFIX + str(node_id).encode(),
                f"{dc}\n{address}".encode(),
                db=self._dbs[b"node"],
            )

    # ------------------------------------------------------------------ writes

    @contextmanager
    def write(self) -> Iterator[WriteBatch]:
        """One transaction, committed (fsync'd) when the block ends without an exception.
        A full map is ``StoreFullError``, saying what to raise; other I/O errors are as
        LMDB raises them (both fatal to the node, which restarts cleanly once fixed)."""
        try:
            with self._env.begin(write=True) as txn:
                yield WriteBatch(txn, self._dbs)
        except lmdb.MapFullError:
            size_mb = self._env.info()["map_size"] >> 20
            raise StoreFullError(
                f"the store is full: its {size_mb} MiB map is used up (raise [storage]"
                " map_size_mb in the cluster config, then restart the node)"
            ) from None

    # ------------------------------------------------------------------ reads

    def load(self, shard_id: int) -> DurableState:
        """The durable Paxos state of one shard: what a restarted replica starts from."""
        with self._env.begin() as txn:
            return _load(txn, self._dbs, shard_id, founding=self._founding)

    @contextmanager
    def read(self, shard_id: int) -> Iterator[ShardEngine]:
        """The shard's state as committed now (a consistent read snapshot)."""
        with self._env.begin() as txn:
            yield ShardEngine(txn, self._dbs, shard_id)

    def ranges(self) -> dict[int, bytes]:
        """Every shard's recorded descriptor (what this node hosts, as it starts)."""
        with self._env.begin() as txn, txn.cursor(db=self._dbs[b"ranges"]) as cursor:
            return {int.from_bytes(key, "big"): L.decode_blob(raw) for key, raw in cursor}


class WriteBatch:
    def __init__(self, txn: Any, dbs: dict[bytes, Any]) -> None:
        self._txn = txn
        self._dbs = dbs

    def persist(self, shard_id: int, record: DurableRecord) -> None:
        _apply(self._txn, self._dbs, shard_id, record)

    def engine(self, shard_id: int) -> ShardEngine:
        return ShardEngine(self._txn, self._dbs, shard_id)


class ShardEngine:
    """``kvstore.model.Engine`` for one shard, inside one LMDB transaction: the node's keys
    (stored by key; the shard's state machine keeps to its span), its own metadata (prefixed
    by its id) and its descriptor (in ``ranges``, so a node lists its shards at once)."""

    def __init__(self, txn: Any, dbs: dict[bytes, Any], shard_id: int) -> None:
        self._txn = txn
        self._dbs = dbs
        self._kv = dbs[b"kv"]
        self._meta = dbs[b"kvmeta"]
        self._ranges = dbs[b"ranges"]
        self._history = dbs[b"history"]
        self._versions = dbs[b"versions"]
        self._prefix = L.shard_prefix(shard_id)

    def get(self, key: bytes) -> Record | None:
        stored = L.stored_key(key)
        raw = self._txn.get(L.USER_SPACE + stored, db=self._kv)
        if raw is None:
            return None
        if not L.is_long(stored):
            return self._valued(key, L.decode_record(raw))
        whole, record = L.decode_long_record(raw)
        assert whole == key, "two long keys with one BLAKE2b-256 digest"
        return self._valued(key, record)

    def put(self, key: bytes, record: Record) -> None:
        """The key's record, its value kept once: in its version at ``mod_revision``
        (history), the ``kv`` row holding the rest (so a write costs one copy of the value,
        not two)."""
        stored = L.stored_key(key)
        row = _with_value(record, b"")
        raw = L.encode_long_record(key, row) if L.is_long(stored) else L.encode_record(row)
        self._txn.put(L.USER_SPACE + stored, raw, db=self._kv)
        self.history_put(key, record.mod_revision, record)

    def _valued(self, key: bytes, row: Record) -> Record:
        """A ``kv`` row with its value, read from the version it names."""
        full = L.USER_SPACE + L.stored_key(key)
        raw = self._txn.get(full + row.mod_revision.to_bytes(8, "big"), db=self._versions)
        assert raw is not None, (key, row.mod_revision)
        _, version = L.decode_version(raw)
        assert version is not None, (key, row.mod_revision)
        return _with_value(row, version.value)

    def scan(self, start: bytes, end: bytes, limit: int) -> list[tuple[bytes, Record]]:
        return [(key, self._valued(key, row)) for key, row in self._scan_rows(start, end, limit)]

    def delete(self, key: bytes) -> None:
        self._txn.delete(L.USER_SPACE + L.stored_key(key), db=self._kv)

    def _scan_rows(self, start: bytes, end: bytes, limit: int) -> list[tuple[bytes, Record]]:
        """Keys in ``[start, end)`` in key order (``_key_ordered``), their rows without
        values."""

        def decode(stored: bytes, raw: bytes) -> tuple[bytes, Record]:
            return (
                L.decode_long_record(raw) if L.is_long(stored) else (stored, L.decode_record(raw))
            )

        with self._txn.cursor(db=self._kv) as cursor:
            return _key_ordered(
                _stored_from(cursor, start, iter(cursor)), decode, start, end, limit
            )

    # ------------------------------------------------------------------ history

    def history_put(self, key: bytes, revision: int, record: Record | None) -> None:
        stored = L.USER_SPACE + L.stored_key(key)
        self._txn.put(stored, L.history_dup(revision), db=self._history, dupdata=True)
        raw = L.encode_version(key, record, long=L.is_long(stored[1:]))
        self._txn.put(stored + revision.to_bytes(8, "big"), raw, db=self._versions)

    def _version(self, key: bytes, stored: bytes, revision: int) -> Version:
        raw = self._txn.get(stored + revision.to_bytes(8, "big"), db=self._versions)
        assert raw is not None, (key, revision)
        whole, record = L.decode_version(raw)
        assert not whole or whole == key, "two long keys with one BLAKE2b-256 digest"
        return Version(key, revision, record)

    def history_at(self, key: bytes, revision: int) -> Version | None:
        stored = L.USER_SPACE + L.stored_key(key)
        with self._txn.cursor(db=self._history) as cursor:
            if not cursor.set_range_dup(stored, L.history_dup(revision)):
                return None
            return self._version(key, stored, L.dup_revision(cursor.value()))

    def history_after(self, key: bytes, revision: int) -> list[Version]:
        stored = L.USER_SPACE + L.stored_key(key)
        newer: list[int] = []
        with self._txn.cursor(db=self._history) as cursor:
            if cursor.set_key(stored):
                for dup in cursor.iternext_dup():
                    at = L.dup_revision(dup)
                    if at <= revision:
                        break
                    newer.append(at)
        return [self._version(key, stored, at) for at in reversed(newer)]

    def history_keys(self, start: bytes, end: bytes, limit: int) -> list[bytes]:
        """As ``scan`` (``_key_ordered``), a long key read from its newest version."""

        def decode(stored: bytes, full: bytes) -> tuple[bytes, None]:
            if not L.is_long(stored):
                return stored, None
            newest = L.dup_revision(self._txn.get(full, db=self._history))
            raw = self._txn.get(full + newest.to_bytes(8, "big"), db=self._versions)
            return L.decode_version(raw)[0], None

        with self._txn.cursor(db=self._history) as cursor:
            keys = cursor.iternext_nodup(keys=True, values=False)
            rows = _stored_from(cursor, start, ((full, full) for full in keys))
            return [key for key, _ in _key_ordered(rows, decode, start, end, limit)]

    def history_delete(self, key: bytes, revision: int) -> None:
        stored = L.USER_SPACE + L.stored_key(key)
        self._txn.delete(stored, L.history_dup(revision), db=self._history)
        self._txn.delete(stored + revision.to_bytes(8, "big"), db=self._versions)

    def meta_get(self, name: bytes) -> bytes | None:
        raw = self._txn.get(self._prefix + name, db=self._meta)
        return L.decode_blob(raw) if raw is not None else None

    def meta_put(self, name: bytes, value: bytes) -> None:
        self._txn.put(self._prefix + name, L.encode_blob(value), db=self._meta)

    def meta_delete(self, name: bytes) -> None:
        self._txn.delete(self._prefix + name, db=self._meta)

    def range_get(self) -> bytes | None:
        raw = self._txn.get(self._prefix, db=self._ranges)
        return L.decode_blob(raw) if raw is not None else None

    def range_put(self, raw: bytes) -> None:
        self._txn.put(self._prefix, L.encode_blob(raw), db=self._ranges)

    def range_delete(self) -> None:
        self._txn.delete(self._prefix, db=self._ranges)

    def sibling(self, shard_id: int) -> ShardEngine:
        return ShardEngine(self._txn, self._dbs, shard_id)

    def meta_scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        full, cut = self._prefix + prefix, len(self._prefix)
        out = []
        with self._txn.cursor(db=self._meta) as cursor:
            if cursor.set_range(full):
                for key, raw in cursor:
                    if not key.startswith(full):
                        break
                    out.append((key[cut:], L.decode_blob(raw)))
        return out


# ---------------------------------------------------------------------- Paxos records


def _apply(txn: Any, dbs: dict[bytes, Any], shard_id: int, record: DurableRecord) -> None:
    """Apply one record in ``MemoryStorage``'s order (snapshot, truncate, entries, promise,
    chosen), so both mean the same."""
    paxos_db, log_db = dbs[b"paxos"], dbs[b"log"]
    prefix = L.shard_prefix(shard_id)
    if record.snapshot is not None:
        raw = txn.get(prefix + L.SNAPSHOT, db=paxos_db)
        current = L.decode_snapshot(raw).slot if raw is not None else -1
        if record.snapshot.slot > current:
            txn.put(prefix + L.SNAPSHOT, L.encode_snapshot(record.snapshot), db=paxos_db)
            _drop_log_through(txn, log_db, shard_id, record.snapshot.slot)
            _raise_chosen(txn, paxos_db, prefix, record.snapshot.slot)
    if record.truncate_through is not None:
        _drop_log_through(txn, log_db, shard_id, record.truncate_through)
    for entry in record.entries:
        txn.put(L.log_key(shard_id, entry.slot), L.encode_entry(entry), db=log_db)
    if record.promised is not None:
        raw = txn.get(prefix, db=dbs[b"promise"])
        if raw is None or record.promised > L.decode_ballot(raw):
            txn.put(prefix, L.encode_ballot(record.promised), db=dbs[b"promise"])
    if record.chosen_through is not None:
        _raise_chosen(txn, paxos_db, prefix, record.chosen_through)
    if record.voting is not None:
        txn.put(prefix + L.VOTING, L.encode_u64(int(record.voting)), db=paxos_db)
    if record.rejoined_at is not None:
        txn.put(prefix + L.REJOINED_AT, L.encode_u64(record.rejoined_at), db=paxos_db)


def _raise_chosen(txn: Any, db: Any, prefix: bytes, slot: int) -> None:
    raw = txn.get(prefix + L.CHOSEN_THROUGH, db=db)
    if raw is None or slot > L.decode_u64(raw):
        txn.put(prefix + L.CHOSEN_THROUGH, L.encode_u64(slot), db=db)


def _drop_log_through(txn: Any, db: Any, shard_id: int, slot: int) -> None:
    prefix, stop = L.shard_prefix(shard_id), L.log_key(shard_id, slot + 1)
    with txn.cursor(db=db) as cursor:
        if not cursor.set_range(prefix):
            return
        while cursor.key().startswith(prefix) and cursor.key() < stop:
            if not cursor.delete():
                break


def _rekey_by_key(txn: Any, db: Any) -> None:
    """Format kvstore-1 to kvstore-2: a kv entry's key was its shard's id (u32) then its
    stored key; it becomes the user space's prefix then the same stored key (spans were
    disjoint, so no two entries meet). Once, in the claiming transaction."""
    with txn.cursor(db=db) as cursor:
        old = list(cursor)
    for key, _ in old:
        txn.delete(key, db=db)
    for key, value in old:
        txn.put(L.USER_SPACE + key[4:], value, db=db)


def _stored_from(
    cursor: Any, start: bytes, entries: Iterator[tuple[bytes, Any]]
) -> Iterator[tuple[bytes, Any]]:
    """The user space's entries from the first one a key at or after ``start`` may be
    stored under (a long one under ``start``'s head), as (stored key, what ``entries``
    gives with it)."""
    prefix = L.USER_SPACE
    if not cursor.set_range(prefix + start[: L.KEY_HEAD_BYTES]):
        return
    for full, item in entries:
        if not full.startswith(prefix):
            return
        yield full[len(prefix) :], item


def _key_ordered(
    rows: Iterator[tuple[bytes, Any]],
    decode: Callable[[bytes, Any], tuple[bytes, T]],
    start: bytes,
    end: bytes,
    limit: int,
) -> list[tuple[bytes, T]]:
    """The keys of ``rows`` (stored keys in stored order) in ``[start, end)``, in key order,
    at most ``limit`` (0: all), each with what ``decode`` makes of its row. Stored keys sort
    as the keys do except within a group of long keys sharing a head
    (``kvstore.storage.layout``): each group is read whole and sorted before its keys are
    taken."""
    out: list[tuple[bytes, T]] = []
    group: list[tuple[bytes, T]] = []
    group_head = b""

    def take(decoded: list[tuple[bytes, T]]) -> bool:
        """Add the keys in range; False once the answer is complete."""
        for key, payload in sorted(decoded, key=lambda row: row[0]):
            if key < start:
                continue
            if (end and key >= end) or (limit and len(out) >= limit):
                return False
            out.append((key, payload))
        return True

    for stored, raw in rows:
        if L.is_long(stored):
            head = stored[: L.KEY_HEAD_BYTES]
            if group and head != group_head:
                if not take(group):
                    return out
                group = []
            if end and head >= end:
                return out  # every key with this head is at or after ``end``
            group_head = head
            group.append(decode(stored, raw))
            continue
        if group:
            if not take(group):
                return out
            group = []
        if not take([decode(stored, raw)]):
            return out
    take(group)
    return out


def _with_value(record: Record, value: bytes) -> Record:
    """``record`` with another value (built directly: it is on every read and write)."""
    return Record(value, record.create_revision, record.mod_revision, record.version, record.lease)


def _values_into_versions(txn: Any, dbs: dict[bytes, Any]) -> None:
    """Format kvstore-2 to kvstore-3: each kv row's value moves into the key's version at
    its mod revision (history), the row keeping the rest. Once, in the claiming
    transaction."""
    kv = dbs[b"kv"]
    with txn.cursor(db=kv) as cursor:
        rows = [(full, raw) for full, raw in cursor if full.startswith(L.USER_SPACE)]
    for full, raw in rows:
        stored = full[len(L.USER_SPACE) :]
        long = L.is_long(stored)
        whole, record = L.decode_long_record(raw) if long else (stored, L.decode_record(raw))
        txn.put(full, L.history_dup(record.mod_revision), db=dbs[b"history"], dupdata=True)
        version = L.encode_version(whole, record, long=long)
        txn.put(full + record.mod_revision.to_bytes(8, "big"), version, db=dbs[b"versions"])
        row = _with_value(record, b"")
        txn.put(full, L.encode_long_record(whole, row) if long else L.encode_record(row), db=kv)


def _load(txn: Any, dbs: dict[bytes, Any], shard_id: int, *, founding: bool) -> DurableState:
    prefix = L.shard_prefix(shard_id)
    raw = txn.get(prefix, db=dbs[b"promise"])
    promised = L.decode_ballot(raw) if raw is not None else Ballot.ZERO
    log: dict[Slot, LogEntry] = {}
    with txn.cursor(db=dbs[b"log"]) as cursor:
        if cursor.set_range(prefix):
            for key, value in cursor:
                if not key.startswith(prefix):
                    break
                slot = L.slot_of(key)
                log[slot] = L.decode_entry(slot, value)
    raw = txn.get(prefix + L.CHOSEN_THROUGH, db=dbs[b"paxos"])
    chosen = Slot(L.decode_u64(raw)) if raw is not None else Slot(0)
    raw = txn.get(prefix + L.SNAPSHOT, db=dbs[b"paxos"])
    snapshot = L.decode_snapshot(raw) if raw is not None else None
    raw = txn.get(prefix + L.VOTING, db=dbs[b"paxos"])
    # Unrecorded: as the node joined (a founding member's replicas vote; a node that came
    # back without its disk rejoins every group first).
    voting = bool(L.decode_u64(raw)) if raw is not None else founding
    raw = txn.get(prefix + L.REJOINED_AT, db=dbs[b"paxos"])
    return DurableState(
        promised=promised,
        log=log,
        chosen_through=chosen,
        snapshot=snapshot,
        voting=voting,
        rejoined_at=Slot(L.decode_u64(raw)) if raw is not None else Slot(0),
    )
