"""Range descriptors: which keys a Paxos group holds, on which nodes, as of which change.

Rules:
- A descriptor names a range (its id, also its Paxos group's), the span of keys it holds,
  its replicas (node ids), its preferred leader datacenter, and a generation that grows with
  every change of span (a split, a merge); a descriptor of a higher generation of the same
  range supersedes a lower one.
- A split at ``at`` leaves the left part to the range and gives the right part to a new
  range, both at the next generation; the range's own log decides when (at one slot).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cluster.config import ClusterConfig
from cluster.keys import END_OF_KEYSPACE, KeySpan


@dataclass(frozen=True, slots=True)
class RangeDescriptor:
    range_id: int
    start: bytes
    end: bytes  # exclusive; b"" = to the end of the key space
    replicas: tuple[int, ...]
    generation: int = 1
    leader_dc: str | None = None

    @property
    def span(self) -> KeySpan:
        assert not self.is_meta, "the meta range holds no keys"
        return KeySpan(self.start, self.end)

    @property
    def is_meta(self) -> bool:
        return self.range_id == META_RANGE_ID

    def contains(self, key: bytes) -> bool:
        return self.start <= key and (self.end == END_OF_KEYSPACE or key < self.end)

    def overlaps(self, other: RangeDescriptor) -> bool:
        """Some key is in both (never for the meta range: it holds none)."""
        return not (self.is_meta or other.is_meta) and self.span.overlaps(other.span)

    def can_split_at(self, at: bytes) -> bool:
        """A split point must leave both parts non-empty."""
        return self.start < at and (self.end == END_OF_KEYSPACE or at < self.end)

    def split(self, at: bytes, new_range_id: int) -> tuple[RangeDescriptor, RangeDescriptor]:
        """The two descriptors a split at ``at`` leaves: this range's left part, the new
        range's right part, both at the next generation."""
        assert self.can_split_at(at), (self, at)
        generation = self.generation + 1
        left = replace(self, end=at, generation=generation)
        right = replace(self, range_id=new_range_id, start=at, generation=generation)
        return left, right


# The meta range: a group of its own that holds the range map (every range's descriptor)
# and hands out range ids. It holds no user keys (its span is empty: ``META_BOUND`` to
# itself, which ``contains`` no key), never splits nor merges, and its id is outside the
# configured shards' (1..).
META_RANGE_ID = 0
META_BOUND = b"\x00"


def meta_descriptor(cluster: ClusterConfig) -> RangeDescriptor:
    """The meta range: on the replicas of the configured shard that starts the key space,
    led from that shard's preferred datacenter."""
    first = min(cluster.shards, key=lambda s: s.span.start)
    return RangeDescriptor(
        META_RANGE_ID,
        META_BOUND,
        META_BOUND,
        first.replicas,
        generation=1,
        leader_dc=cluster.default_leader_dc(first.shard_id),
    )


def hosted_layout(cluster: ClusterConfig) -> list[RangeDescriptor]:
    """Every group of the first layout a node may host: the configured shards and meta."""
    return [meta_descriptor(cluster), *initial_layout(cluster)]


def initial_layout(cluster: ClusterConfig) -> list[RangeDescriptor]:
    """The configured shards as descriptors of generation 1 (the layout before any split)."""
    return [
        RangeDescriptor(
            s.shard_id,
            s.span.start,
            s.span.end,
            s.replicas,
            generation=1,
            leader_dc=cluster.default_leader_dc(s.shard_id),
        )
        for s in cluster.shards
    ]


def base_slot_of(cluster: ClusterConfig, range_id: int) -> int:
    """0 for a configured shard or meta (its log starts from nothing); 1 for one split off another
    (slot 1 stands for the state it was born with: ``paxos.Config.base_slot``)."""
    configured = range_id == META_RANGE_ID or any(s.shard_id == range_id for s in cluster.shards)
    return 0 if configured else 1
