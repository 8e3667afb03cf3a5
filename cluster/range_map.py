"""Which range holds a key, as far as the holder of this map knows: a cache of descriptors.

Rules:
- A learned descriptor is kept while it still owns some key here; where two overlap, the
  higher generation wins (a split or merge raises the generation of what it leaves, so along
  any history of a key the newer descriptor is the higher one). An older descriptor of a
  range therefore keeps the keys no newer one covers yet (the right half of its split, before
  the new range is learned): the map never loses a key.
- A stale answer is safe: the range it names refuses a key it no longer holds with its
  successors (``OutOfRange``), which the caller learns here and routes again.
- Lookups are O(log ranges) over disjoint segments rebuilt on each update (updates are rare:
  a split, a merge, a refusal).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from cluster.keys import END_OF_KEYSPACE
from cluster.ranges import RangeDescriptor


class RangeMap:
    def __init__(self, descriptors: Iterable[RangeDescriptor] = ()) -> None:
        self._known: dict[tuple[int, int], RangeDescriptor] = {}  # by (id, generation)
        self._latest: dict[int, RangeDescriptor] = {}
        self._starts: list[bytes] = []
        self._segments: list[tuple[bytes, bytes, RangeDescriptor]] = []
        self.update(descriptors)

    def update(self, descriptors: Iterable[RangeDescriptor]) -> bool:
        """Learn ``descriptors``; whether anything changed."""
        changed = False
        for d in descriptors:
            if d.is_meta:
                continue  # it holds no keys
            if (d.range_id, d.generation) not in self._known:
                self._known[d.range_id, d.generation] = d
                changed = True
        if changed:
            self._rebuild()
        return changed

    def _rebuild(self) -> None:
        # Paint from the highest generation down: each descriptor takes the gaps left between
        # the pieces already taken (kept sorted, so a range costs O(log n) plus its pieces).
        starts: list[tuple[int, bytes]] = []  # the taken pieces' bounds, as _at positions
        ends: list[tuple[int, bytes]] = []
        owners: list[RangeDescriptor] = []
        for d in sorted(self._known.values(), key=lambda d: (-d.generation, d.start)):
            lo, hi = _at(d.start), _at(d.end, end=True)
            j = bisect.bisect_right(starts, lo) - 1
            if j < 0 or ends[j] <= lo:
                j += 1
            cursor, gaps = lo, []
            while j < len(starts) and starts[j] < hi:
                if starts[j] > cursor:
                    gaps.append((cursor, starts[j]))
                cursor = max(cursor, ends[j])
                j += 1
            if cursor < hi:
                gaps.append((cursor, hi))
            if not gaps:
                del self._known[d.range_id, d.generation]  # superseded everywhere
                continue
            for gap_lo, gap_hi in gaps:
                at = bisect.bisect_left(starts, gap_lo)
                starts.insert(at, gap_lo)
                ends.insert(at, gap_hi)
                owners.insert(at, d)
        self._latest = {}
        for d in self._known.values():
            if d.range_id not in self._latest or d.generation > self._latest[d.range_id].generation:
                self._latest[d.range_id] = d
        self._segments = [(lo[1], hi[1], d) for lo, hi, d in zip(starts, ends, owners, strict=True)]
        self._starts = [t[0] for t in self._segments]

    def lookup(self, key: bytes) -> RangeDescriptor | None:
        index = bisect.bisect_right(self._starts, key) - 1
        if index < 0:
            return None
        lo, hi, d = self._segments[index]
        return d if _inside(key, lo, hi) else None

    def overlapping(self, start: bytes, end: bytes) -> list[tuple[bytes, bytes, RangeDescriptor]]:
        """The pieces of ``[start, end)`` (``end == b""``: to the end) and the range each is
        in, in key order; a piece no known range covers is left out."""
        first = max(bisect.bisect_right(self._starts, start) - 1, 0)
        out = []
        for lo, hi, d in self._segments[first:]:
            if end != END_OF_KEYSPACE and lo >= end:
                break
            piece_lo = max(lo, start)
            piece_hi = _min_end(hi, end)
            if piece_hi == END_OF_KEYSPACE or piece_lo < piece_hi:
                out.append((piece_lo, piece_hi, d))
        return out

    def get(self, range_id: int) -> RangeDescriptor | None:
        """The newest descriptor of ``range_id`` known here."""
        return self._latest.get(range_id)

    def known(self) -> list[RangeDescriptor]:
        """Every descriptor kept (each owns some key), by range id and generation: what the
        meta range stores, since the map is a function of this set alone."""
        return [self._known[k] for k in sorted(self._known)]

    def current(self) -> list[RangeDescriptor]:
        """The descriptors that own some key, in key order (one per range)."""
        seen: dict[int, RangeDescriptor] = {}
        for _, _, d in self._segments:
            seen.setdefault(d.range_id, d)
        return list(seen.values())


def _inside(key: bytes, lo: bytes, hi: bytes) -> bool:
    return lo <= key and (hi == END_OF_KEYSPACE or key < hi)


def _min_end(a: bytes, b: bytes) -> bytes:
    if a == END_OF_KEYSPACE:
        return b
    if b == END_OF_KEYSPACE:
        return a
    return min(a, b)


def _at(key: bytes, *, end: bool = False) -> tuple[int, bytes]:
    """A bound as an orderable position: an end of b"" is after every key."""
    return (1, b"") if end and key == END_OF_KEYSPACE else (0, key)
