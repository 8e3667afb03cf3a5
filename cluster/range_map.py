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
            if (d.range_id, d.generation) not in self._known:
                self._known[d.range_id, d.generation] = d
                changed = True
        if changed:
            self._rebuild()
        return changed

    def _rebuild(self) -> None:
        # Paint from the highest generation down: each descriptor takes what is still free.
        taken: list[tuple[bytes, bytes, RangeDescriptor]] = []
        for d in sorted(self._known.values(), key=lambda d: (-d.generation, d.start)):
            pieces = [(d.start, d.end)]
            for lo, hi, _ in taken:
                pieces = [p for piece in pieces for p in _minus(piece, (lo, hi))]
            if not pieces:
                del self._known[d.range_id, d.generation]  # superseded everywhere
                continue
            taken.extend((lo, hi, d) for lo, hi in pieces)
        taken.sort(key=lambda t: t[0])
        self._latest = {}
        for d in self._known.values():
            if d.generation > self._latest.get(d.range_id, d).generation or (
                d.range_id not in self._latest
            ):
                self._latest[d.range_id] = d
        self._segments = taken
        self._starts = [t[0] for t in taken]

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


def _minus(piece: tuple[bytes, bytes], cut: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    """``piece`` without ``cut`` (both half-open; an end of b"" is the end of the keys)."""
    lo, hi = piece
    c_lo, c_hi = cut
    overlaps = (hi == END_OF_KEYSPACE or c_lo < hi) and (c_hi == END_OF_KEYSPACE or lo < c_hi)
    if not overlaps:
        return [piece]
    out = []
    if lo < c_lo:
        out.append((lo, c_lo))
    if c_hi != END_OF_KEYSPACE and (hi == END_OF_KEYSPACE or c_hi < hi):
        out.append((c_hi, hi))
    return out
