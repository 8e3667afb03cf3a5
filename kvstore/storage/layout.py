"""How everything a node keeps is laid out in its one LMDB environment.

Named databases (keys are big-endian so LMDB's byte order is numeric order):

| db          | key                      | value                                      |
|-------------|--------------------------|--------------------------------------------|
| ``node``    | name                     | node identity: cluster name, node id, format |
| ``promise`` | shard u32                | promised ballot                            |
| ``log``     | shard u32 · slot u64     | accepted entry: ballot and value (framed, crc32) |
| ``paxos``   | shard u32 · name         | chosen_through u64; snapshot (framed)      |
| ``kv``      | shard u32 · key          | record: value, create/mod revision, version (framed) |
| ``kvmeta``  | shard u32 · name         | state machine: revision, applied slot, sessions |

Every value is a checksummed frame (``kvstore.model.codec``) and is verified when read.
"""

from __future__ import annotations

from kvstore.model.codec import Reader, Writer
from kvstore.model.engine import Record
from paxos import Ballot, LogEntry, NodeId, Slot, Snapshot, Value

DB_NAMES = (b"node", b"promise", b"log", b"paxos", b"kv", b"kvmeta")
CHOSEN_THROUGH = b"chosen_through"
SNAPSHOT = b"snapshot"


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


def encode_record(record: Record) -> bytes:
    w = Writer()
    w.blob(record.value)
    w.u64(record.create_revision)
    w.u64(record.mod_revision)
    w.u64(record.version)
    return w.framed()


def decode_record(raw: bytes) -> Record:
    r = Reader(raw)
    record = Record(r.blob(), r.u64(), r.u64(), r.u64())
    r.done()
    return record


def encode_blob(value: bytes) -> bytes:
    w = Writer()
    w.blob(value)
    return w.framed()


def decode_blob(raw: bytes) -> bytes:
    r = Reader(raw)
    value = r.blob()
    r.done()
    return value
