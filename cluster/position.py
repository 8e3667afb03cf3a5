"""How far a reader of a key range has seen the store's changes: a position, and its token.

Revisions are per shard, and shards split and merge, so no single number says where a
reader of many shards stands. A ``Position`` says it key by key: a piecewise map from the
keys of a range to revisions, "every change at these keys up to this revision is seen".

Rules:
- It is exact because a key's revisions only grow, whatever shard makes them (a split
  child starts at its parent's revision, a merge at the higher of the two): a change at key
  ``k`` with revision ``r`` is new to the reader exactly when ``r > position.at(k)``. So a
  position stays valid across splits and merges, and a reader resumes from it anywhere.
- A shard's changes come in revision order, so once a reader has seen a change at revision
  ``r`` of a shard, or a progress mark "shard at ``r``", every change up to ``r`` in the
  shard's span (as it was then) is seen: ``advanced(span, r)``. Pieces never go back.
- ``token()`` is the position as an opaque printable string (URL-safe base64 of a framed,
  checksummed encoding); ``from_token`` refuses anything else with ``ValueError``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import zlib
from dataclasses import dataclass

from cluster.keys import END_OF_KEYSPACE, KeySpan

_VERSION = 1
PIECES_MAX = 1 << 16  # a token naming more pieces than this is refused (not a position)


@dataclass(frozen=True, slots=True)
class Piece:
    start: bytes
    end: bytes  # exclusive; b"" = the end of the key space
    revision: int


@dataclass(frozen=True)
class Position:
    """Contiguous pieces in key order, covering ``[start, end)`` of the range read.

    Immutable, and shared: the watchers at one position hold one object, so its token is
    made once (``token`` is cached on it)."""

    pieces: tuple[Piece, ...]

    @staticmethod
    def at(span: KeySpan, revision: int) -> Position:
        """Everything in ``span`` seen up to ``revision`` (a reader starting after it)."""
        return Position((Piece(span.start, span.end, revision),))

    @property
    def span(self) -> KeySpan:
        return KeySpan(self.pieces[0].start, self.pieces[-1].end)

    def revision_at(self, key: bytes) -> int:
        """Every change at ``key`` up to this revision is seen (the key is in the span)."""
        for piece in self.pieces:
            if _before(key, piece.end):
                return piece.revision
        raise KeyError(key)

    def is_new(self, key: bytes, revision: int) -> bool:
        return revision > self.revision_at(key)

    def lowest(self, span: KeySpan) -> int | None:
        """The lowest revision over the part of ``span`` in the range (None: no part)."""
        revisions = [p.revision for p in self.pieces if _overlap(p, span)]
        return min(revisions) if revisions else None

    def advanced(self, span: KeySpan, revision: int) -> Position:
        """Seen everything in ``span`` up to ``revision`` as well (only the part in range)."""
        out: list[Piece] = []
        for piece in self.pieces:
            if not _overlap(piece, span) or piece.revision >= revision:
                out.append(piece)
                continue
            lo = max(piece.start, span.start)
            hi = _min_end(piece.end, span.end)
            if piece.start < lo:
                out.append(Piece(piece.start, lo, piece.revision))
            out.append(Piece(lo, hi, revision))
            if hi != piece.end:
                out.append(Piece(hi, piece.end, piece.revision))
        return Position(_coalesced(out))

    # ------------------------------------------------------------------ the token

    def token(self) -> str:
        return self._token

    @functools.cached_property
    def _token(self) -> str:
        body = bytearray([_VERSION])
        body += _varint(len(self.pieces))
        for piece in self.pieces:
            body += _blob(piece.start)
            body += _varint(piece.revision)
        body += _blob(self.pieces[-1].end)
        body += zlib.crc32(bytes(body)).to_bytes(4, "big")
        return base64.urlsafe_b64encode(bytes(body)).decode().rstrip("=")

    @staticmethod
    def from_token(token: str) -> Position:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise ValueError("not a position token (bad base64)") from None
        if len(raw) < 5 or zlib.crc32(raw[:-4]) != int.from_bytes(raw[-4:], "big"):
            raise ValueError("not a position token (bad checksum)")
        reader = _Reader(raw[:-4])
        if reader.byte() != _VERSION:
            raise ValueError("not a position token (unknown version)")
        count = reader.varint()
        if not 1 <= count <= PIECES_MAX:
            raise ValueError(f"not a position token ({count} pieces)")
        starts, revisions = [], []
        for _ in range(count):
            starts.append(reader.blob())
            revisions.append(reader.varint())
        end = reader.blob()
        reader.done()
        bounds = [*starts[1:], end]
        pieces = tuple(Piece(s, e, r) for s, e, r in zip(starts, bounds, revisions, strict=True))
        for piece in pieces:
            if piece.end != END_OF_KEYSPACE and piece.end <= piece.start:
                raise ValueError("not a position token (pieces out of order)")
        return Position(pieces)


def _overlap(piece: Piece, span: KeySpan) -> bool:
    return _before(span.start, piece.end) and _before(piece.start, span.end)


def _before(key: bytes, end: bytes) -> bool:
    return end == END_OF_KEYSPACE or key < end


def _min_end(a: bytes, b: bytes) -> bytes:
    if a == END_OF_KEYSPACE:
        return b
    if b == END_OF_KEYSPACE:
        return a
    return min(a, b)


def _coalesced(pieces: list[Piece]) -> tuple[Piece, ...]:
    out: list[Piece] = []
    for piece in pieces:
        if out and out[-1].revision == piece.revision:
            out[-1] = Piece(out[-1].start, piece.end, piece.revision)
        else:
            out.append(piece)
    return tuple(out)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _blob(data: bytes) -> bytes:
    return _varint(len(data)) + data


class _Reader:
    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._at = 0

    def byte(self) -> int:
        if self._at >= len(self._raw):
            raise ValueError("not a position token (truncated)")
        value = self._raw[self._at]
        self._at += 1
        return value

    def varint(self) -> int:
        value = shift = 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise ValueError("not a position token (number too long)")

    def blob(self) -> bytes:
        size = self.varint()
        if self._at + size > len(self._raw):
            raise ValueError("not a position token (truncated)")
        data = self._raw[self._at : self._at + size]
        self._at += size
        return data

    def done(self) -> None:
        if self._at != len(self._raw):
            raise ValueError("not a position token (trailing bytes)")
