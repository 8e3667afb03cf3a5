"""How everything a node keeps is laid out in its one LMDB environment.

Named databases (keys are big-endian so LMDB's byte order is numeric order):

| db          | key                      | value                                      |
|-------------|--------------------------|--------------------------------------------|
| ``node``    | name                     | identity: format, cluster, node id, joined |
| ``promise`` | shard u32                | promised ballot                            |
| ``log``     | shard u32 · slot u64     | accepted entry: ballot and value (framed, crc32) |
| ``paxos``   | shard u32 · name         | chosen_through u64; snapshot; voting (framed) |
| ``kv``      | space u8 · stored key    | create/mod revision, version, lease (value: below) |
| ``kvmeta``  | shard u32 · name         | state machine: revision, applied slot, sessions |
| ``ranges``  | shard u32                | the shard's descriptor: span, replicas, generation |
| ``history`` | space u8 · stored key    | (dupsort) ~revision u64 per version, newest first |
| ``versions``| space u8 · stored key · rev u64 | deleted flag, record (whole key if long) |

A key's value is kept once: in its version at its mod revision (a write costs one copy of
the value, not two); ``kv`` holds the rest of its record. History (every change of a key,
by key and revision: ``kvstore.model.engine``) is two
databases: ``history`` lists a key's revisions as sorted duplicates (complemented, so the
newest comes first and "the newest at or before R" is one ``set_range_dup``), and
``versions`` holds each version under its exact stored key and revision. Exact lookups only,
so a stored key followed by a revision is never mistaken for a longer key.

Every value is a checksummed frame (``kvstore.model.codec``) and is verified when read.

Data is keyed by the key itself, not by the shard that holds it: a shard's engine sees the
keys of its span, so moving a span boundary (a split, a merge) moves no data. The space byte
sets the user's keys (``USER_SPACE``) apart from any the system keeps for itself. (Format
``kvstore-1`` prefixed each key with its shard id; ``NodeStore`` re-keys such a directory
once, when it is claimed.)

Long keys. LMDB refuses keys over 511 bytes, and client keys may be far longer (4 KiB by
default). A key of at most ``KEY_HEAD_BYTES`` is stored as itself; a longer one as its first
``KEY_HEAD_BYTES`` bytes followed by its BLAKE2b-256 digest, with the whole key kept in the
record (``encode_long_record``). Stored keys then sort as the keys do, except among long keys
that share their head: a short key is never longer than a head, so it compares with a long
key exactly as it compares with that key's stored form. A scan sorts each such group of
long keys by the keys themselves (``kvstore.storage.lmdb_store``). The digest makes two long
keys collide only if BLAKE2b-256 does.
"""

from __future__ import annotations

import hashlib

from kvstore.model.codec import Reader, Writer
from kvstore.model.engine import Record
from paxos import Ballot, LogEntry, NodeId, Slot, Snapshot, Value

DB_NAMES = (
    b"node",
    b"promise",
    b"log",
    b"paxos",
    b"kv",
    b"kvmeta",
    b"ranges",
    b"history",
    b"versions",
)
DUPSORT_DBS = (b"history",)
_REVISION_MASK = (1 << 64) - 1


def history_dup(revision: int) -> bytes:
    """A revision as a ``history`` duplicate: complemented, so newer sorts first."""
    return (_REVISION_MASK ^ revision).to_bytes(8, "big")


def dup_revision(dup: bytes) -> int:
    return _REVISION_MASK ^ int.from_bytes(dup, "big")


CHOSEN_THROUGH = b"chosen_through"
SNAPSHOT = b"snapshot"
VOTING = b"voting"  # 1: the replica votes; 0: it lost its state and rejoins first
REJOINED_AT = b"rejoined_at"  # the barrier its last rejoin caught up through


# Keys up to this length are stored as themselves. With the digest and a prefix of up to 8
# bytes a stored key stays well under LMDB's 511 (1 + 440 + 32 = 473 today).
KEY_HEAD_BYTES = 440
KEY_DIGEST_BYTES = 32


def stored_key(key: bytes) -> bytes:
    """Where ``key`` lives in the ``kv`` database, after its shard prefix."""
    if len(key) <= KEY_HEAD_BYTES:
        return key
    return key[:KEY_HEAD_BYTES] + hashlib.blake2b(key, digest_size=KEY_DIGEST_BYTES).digest()


def is_long(stored: bytes) -> bool:
    """Whether a stored key (without its shard prefix) is a long key's head and digest."""
    return len(stored) > KEY_HEAD_BYTES


USER_SPACE = b"\x01"  # the prefix of every user key in the ``kv`` database


def shard_prefix(shard_id: int) -> bytes:
    return shard_id.to_bytes(4, "big")


def log_key(shard_id: int, slot: int) -> bytes:
    return shard_prefix(shard_id) + slot.to_bytes(8, "big")


def slot_of(key: bytes) -> Slot:
    return Slot(int.from_bytes(key[4:12], "big"))


def encode_ballot(ballot: Ballot) -> bytes:
    w = Writer()
    w.u64(ballot.round)
    w.u64(ballot.node_id)
    return w.framed()


def decode_ballot(raw: bytes) -> Ballot:
    r = Reader(raw)
    ballot = Ballot(r.u64(), NodeId(r.u64()))
    r.done()
    return ballot


def encode_entry(entry: LogEntry) -> bytes:
    w = Writer()
    w.u64(entry.ballot.round)
    w.u64(entry.ballot.node_id)
    w.u64(len(entry.value))
    for command in entry.value:
        w.blob(command)
    return w.framed()


def decode_entry(slot: Slot, raw: bytes) -> LogEntry:
    r = Reader(raw)
    ballot = Ballot(r.u64(), NodeId(r.u64()))
    value: Value = tuple(r.blob() for _ in range(r.count(1 << 20)))
    r.done()
    return LogEntry(slot=slot, ballot=ballot, value=value)


def encode_u64(value: int) -> bytes:
    w = Writer()
    w.u64(value)
    return w.framed()


def decode_u64(raw: bytes) -> int:
    r = Reader(raw)
    value = r.u64()
    r.done()
    return value


def encode_snapshot(snapshot: Snapshot) -> bytes:
    w = Writer()
    w.u64(snapshot.slot)
    w.blob(snapshot.data)
    return w.framed()


def decode_snapshot(raw: bytes) -> Snapshot:
    r = Reader(raw)
    snapshot = Snapshot(slot=Slot(r.u64()), data=r.blob())
    r.done()
    return snapshot


def _write_record(w: Writer, record: Record) -> None:
    """The record's fields; its lease only when it has one (records before leases had
    none, and read the same)."""
    w.blob(record.value)
    w.u64(record.create_revision)
    w.u64(record.mod_revision)
    w.u64(record.version)
    if record.lease:
        w.u64(record.lease)


def _read_record(r: Reader) -> Record:
    value, create, mod, version = r.blob(), r.u64(), r.u64(), r.u64()
    lease = 0 if r.at_end() else r.u64()
    r.done()
    return Record(value, create, mod, version, lease)


def encode_record(record: Record) -> bytes:
    w = Writer()
    _write_record(w, record)
    return w.framed()


def decode_record(raw: bytes) -> Record:
    return _read_record(Reader(raw))


def encode_long_record(key: bytes, record: Record) -> bytes:
    """A long key's record: the whole key first, then the record's fields."""
    w = Writer()
    w.blob(key)
    _write_record(w, record)
    return w.framed()


def decode_long_record(raw: bytes) -> tuple[bytes, Record]:
    r = Reader(raw)
    key = r.blob()
    return key, _read_record(r)


def encode_version(key: bytes, record: Record | None, *, long: bool) -> bytes:
    """A version: the whole key if it is long, then whether it deleted the key, then the
    record it left (if it did not)."""
    w = Writer()
    w.blob(key if long else b"")
    w.u64(1 if record is None else 0)
    if record is not None:
        _write_record(w, record)
    return w.framed()


def decode_version(raw: bytes) -> tuple[bytes, Record | None]:
    """The whole key (empty unless long) and the record (None: a delete)."""
    r = Reader(raw)
    key = r.blob()
    if r.u64():
        r.done()
        return key, None
    return key, _read_record(r)


def encode_blob(value: bytes) -> bytes:
    w = Writer()
    w.blob(value)
    return w.framed()


def decode_blob(raw: bytes) -> bytes:
    r = Reader(raw)
    value = r.blob()
    r.done()
    return value
