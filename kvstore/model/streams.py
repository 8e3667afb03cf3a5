"""A partition's log inside a shard: its head and its records, as keys of its row.

Rules:
- The row's own key holds the **head**: the first retained offset, the next offset, and the
  retained records' bytes. Records are keys ``<row><offset:8>`` (``cluster.stream_keys``),
  each value a frame of the time it was appended and the record.
- Offsets are dense: an append gives its records ``next .. next + n - 1`` and moves ``next``;
  a trim deletes records from the front and moves ``first``. Both happen in the apply, so
  every replica assigns the same offsets (the log's order is the partition's order).
- The head and records are ordinary keys: they move with splits and merges (a row is never
  cut), snapshots carry them, watches see each record as a put.
"""

from __future__ import annotations

from dataclasses import dataclass

from kvstore.model.codec import Reader, Writer
from kvstore.model.commands import StreamRecord, read_stream_record, write_stream_record


@dataclass(frozen=True, slots=True)
class Head:
    first: int = 0  # the first retained offset
    next: int = 0  # the offset the next record gets
    retained_bytes: int = 0  # the stored size of the records from ``first`` on


def encode_head(head: Head) -> bytes:
    w = Writer()
    w.u64(head.first)
    w.u64(head.next)
    w.u64(head.retained_bytes)
    return w.framed()


def decode_head(raw: bytes | None) -> Head:
    """The head stored at a row's key (None: no partition there yet, so an empty one)."""
    if raw is None:
        return Head()
    r = Reader(raw)
    head = Head(r.u64(), r.u64(), r.u64())
    r.done()
    return head


def encode_record(appended_ms: int, record: StreamRecord) -> bytes:
    w = Writer()
    w.u64(appended_ms)
    write_stream_record(w, record)
    return w.framed()


def decode_record(raw: bytes) -> tuple[int, StreamRecord]:
    """A stored record: (the time it was appended in ms, the record)."""
    r = Reader(raw)
    appended_ms = r.u64()
    record = read_stream_record(r)
    r.done()
    return appended_ms, record
