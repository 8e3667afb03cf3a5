"""Byte keys and key spans.

Rules:
- Keys are ``bytes``, ordered bytewise (the order ``sorted`` gives).
- A ``KeySpan`` is ``[start, end)``; ``end == b""`` means "to the end of the key space",
  so ``KeySpan(b"", b"")`` is every key.
"""

from __future__ import annotations

from dataclasses import dataclass

END_OF_KEYSPACE = b""


@dataclass(frozen=True, slots=True)
class KeySpan:
    start: bytes
    end: bytes  # exclusive; b"" = unbounded

    def __post_init__(self) -> None:
        if self.end != END_OF_KEYSPACE and self.end <= self.start:
            raise ValueError(f"empty or inverted span [{self.start!r}, {self.end!r})")

    def contains(self, key: bytes) -> bool:
        return self.start <= key and (self.end == END_OF_KEYSPACE or key < self.end)

    def overlaps(self, other: KeySpan) -> bool:
        return _before(self.start, other.end) and _before(other.start, self.end)

    def __str__(self) -> str:
        end = "∞" if self.end == END_OF_KEYSPACE else _show(self.end)
        return f"[{_show(self.start)}, {end})"


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with ``prefix`` (b"" when there is none)."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1]) if stripped else END_OF_KEYSPACE


def _before(start: bytes, end: bytes) -> bool:
    """``start`` lies before the exclusive bound ``end``."""
    return end == END_OF_KEYSPACE or start < end


def _show(key: bytes) -> str:
    try:
        text = key.decode("ascii")
    except UnicodeDecodeError:
        return "0x" + key.hex()
    return repr(text) if text.isprintable() else "0x" + key.hex()
