"""A shard's state-machine snapshot: its descriptor, the records of its span, every
metadata entry (revision, applied slot, sessions, successors) and the history of its span
that reads at or after its compacted revision need, in one checksummed frame. Pure: works
on any ``Engine``.

The descriptor, the shards split off it and the replicas' disks come first (``header``),
so a node learns what a snapshot makes it host without decoding the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cluster.keys import END_OF_KEYSPACE, KeySpan
from cluster.ranges import RangeDescriptor
from kvstore.model import history
from kvstore.model.codec import Reader, Writer
from kvstore.model.engine import Engine, Record, Version
from kvstore.model.ranges import (
    Successor,
    decode_descriptor,
    decode_successors,
    encode_descriptor,
    encode_successors,
)
from kvstore.model.state_machine import KvStateMachine, decode_pairs, encode_pairs

ROWS_MAX = 1 << 40


@dataclass(frozen=True, slots=True)
class Header:
    descriptor: RangeDescriptor | None  # None: a shard of a layout without descriptors
    successors: tuple[Successor, ...]
    # This shard's replicas when it began as a successor, with their disks' incarnations;
    # and, of an ended shard, its successor's (``Reconfigure.disks``): a
    # replica that learned its shard from a snapshot answers ``Host`` questions with them.
    disks: tuple[tuple[int, int], ...] = ()
    ended_disks: tuple[tuple[int, int], ...] = ()


def dump(engine: Engine, initial: RangeDescriptor | None = None) -> bytes:
    """The shard's state as of now; ``initial``: its descriptor if none is stored yet."""
    machine = KvStateMachine(engine, initial=initial)
    descriptor = machine.descriptor
    w = Writer()
    w.blob(encode_descriptor(descriptor) if descriptor is not None else b"")
    w.blob(encode_successors(machine.successors))
    w.blob(encode_pairs(tuple(sorted(machine.disk_incarnations.items()))))
    w.blob(encode_pairs(machine.ended_disks))
    start, end = (descriptor.start, descriptor.end) if descriptor else (b"", END_OF_KEYSPACE)
    rows = engine.scan(start, end, 0)
    w.u64(len(rows))
    for key, record in rows:
        w.blob(key)
        w.blob(record.value)
        w.u64(record.create_revision)
        w.u64(record.mod_revision)
        w.u64(record.version)
        w.u64(record.lease)
    meta = engine.meta_scan(b"")
    w.u64(len(meta))
    for name, value in meta:
        w.blob(name)
        w.blob(value)
    compacted = machine.compacted_revision
    versions = [
        v
        for key in engine.history_keys(start, end, 0)
        for v in history.needed(engine, key, compacted)
    ]
    w.u64(len(versions))
    for v in versions:
        w.blob(v.key)
        w.u64(v.revision)
        w.u64(1 if v.record is None else 0)
        record = v.record or Record(b"", 0, 0, 0)
        w.blob(record.value)
        w.u64(record.create_revision)
        w.u64(record.mod_revision)
        w.u64(record.version)
        w.u64(record.lease)
    return w.framed()


def header(data: bytes) -> Header:
    return _read_header(Reader(data))


def _read_header(r: Reader) -> Header:
    raw = r.blob()
    descriptor = decode_descriptor(raw) if raw else None
    successors = decode_successors(r.blob())
    disks = tuple(sorted(decode_pairs(r.blob()).items()))
    ended_disks = tuple(sorted(decode_pairs(r.blob()).items()))
    return Header(descriptor, successors, disks, ended_disks)


def restore(
    engine: Engine,
    data: bytes,
    initial: RangeDescriptor | None = None,
    keep: Sequence[KeySpan] = (),
) -> Header:
    """Replace the shard's state with the snapshot (verified before anything changes): its
    metadata, its descriptor, and the keys of its span and of the span it had before (keys
    the shard gave away meanwhile are another shard's to bring), except those in ``keep``:
    the spans of other shards the node serves, whose keys are theirs already (one that
    learned of its shard from no log of this one, a ``Host`` answer, may come first)."""
    r = Reader(data)
    head = _read_header(r)
    descriptor = head.descriptor
    rows = [
        (r.blob(), Record(r.blob(), r.u64(), r.u64(), r.u64(), r.u64()))
        for _ in range(r.count(ROWS_MAX))
    ]
    meta = [(r.blob(), r.blob()) for _ in range(r.count(ROWS_MAX))]
    versions = [_read_version(r) for _ in range(r.count(ROWS_MAX))]
    r.done()
    before = KvStateMachine(engine, initial=initial).descriptor
    for span_of in {before, descriptor}:
        start, end = (span_of.start, span_of.end) if span_of else (b"", END_OF_KEYSPACE)
        kept = [] if span_of == descriptor else list(keep)
        for key, _ in engine.scan(start, end, 0):
            if not any(span.contains(key) for span in kept):
                engine.delete(key)
        for key in engine.history_keys(start, end, 0):
            if any(span.contains(key) for span in kept):
                continue
            for v in engine.history_after(key, -1):
                engine.history_delete(key, v.revision)
    for name, _ in engine.meta_scan(b""):
        engine.meta_delete(name)
    for key, record in rows:
        engine.put(key, record)
    for name, value in meta:
        engine.meta_put(name, value)
    for v in versions:
        engine.history_put(v.key, v.revision, v.record)
    if descriptor is not None:
        engine.range_put(encode_descriptor(descriptor))
    else:
        engine.range_delete()
    return head


def _read_version(r: Reader) -> Version:
    key, revision, deleted = r.blob(), r.u64(), r.u64()
    record = Record(r.blob(), r.u64(), r.u64(), r.u64(), r.u64())
    return Version(key, revision, None if deleted else record)
