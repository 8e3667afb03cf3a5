"""Range descriptors as bytes: what a shard keeps of its own span, replicas and generation.

A shard's descriptor is replicated state: written by the state machine, in the transaction
of the command that changed it (a split), and carried by snapshots, so every replica and
every restart agrees on which keys a shard holds after which slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from cluster.ranges import RangeDescriptor
from kvstore.model.codec import CodecError, Reader, Writer

REPLICAS_MAX = 64
DC_NAME_BYTES_MAX = 256


def encode_descriptor(d: RangeDescriptor) -> bytes:
    w = Writer()
    w.u64(d.range_id)
    w.blob(d.start)
    w.blob(d.end)
    w.u64(len(d.replicas))
    for replica in d.replicas:
        w.u64(replica)
    w.u64(d.generation)
    w.blob((d.leader_dc or "").encode())
    return w.framed()


@lru_cache(maxsize=4096)
def decode_descriptor(raw: bytes) -> RangeDescriptor:
    """Cached: every read decodes its shard's descriptor (to check the key is still there),
    and a shard's descriptor bytes change only with a split or a merge."""
    r = Reader(raw)
    range_id, start, end = r.u64(), r.blob(), r.blob()
    replicas = tuple(r.u64() for _ in range(r.count(REPLICAS_MAX)))
    generation = r.u64()
    dc = r.blob()
    r.done()
    if len(dc) > DC_NAME_BYTES_MAX:
        raise CodecError("datacenter name too long")
    try:
        leader_dc = dc.decode() or None
    except UnicodeDecodeError:
        raise CodecError("datacenter name is not UTF-8") from None
    return RangeDescriptor(range_id, start, end, replicas, generation, leader_dc)


@dataclass(frozen=True, slots=True)
class Successor:
    """A shard split off this one, as this one knew it then, and the slot (of this shard's
    log) that split it off: a node that learns of it from a snapshot decides with the slot
    whether its replica may vote at once (``kvstore.model.node``)."""

    descriptor: RangeDescriptor
    split_slot: int


def encode_successors(successors: Sequence[Successor]) -> bytes:
    w = Writer()
    w.u64(len(successors))
    for s in successors:
        w.blob(encode_descriptor(s.descriptor))
        w.u64(s.split_slot)
    return w.framed()


def decode_successors(raw: bytes) -> tuple[Successor, ...]:
    r = Reader(raw)
    out = tuple(Successor(decode_descriptor(r.blob()), r.u64()) for _ in range(r.count(1 << 20)))
    r.done()
    return out
