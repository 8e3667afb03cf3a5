"""Byte-level encoding helpers: a framed, versioned, checksummed binary format.

Frame: ``version (1 byte) | crc32 of the body (4 bytes, big-endian) | body``. Integers are
unsigned 64-bit big-endian, byte strings are length-prefixed (u32). Decoding never trusts its
input: truncation, trailing bytes, a bad version or checksum raise ``CodecError``, nothing else.
"""

from __future__ import annotations

import struct
import zlib

FORMAT_VERSION = 1
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")


class CodecError(ValueError):
    """Bytes that are not a valid encoding (corrupt, truncated, or from another version)."""


class Writer:
    def __init__(self) -> None:
        self._buf = bytearray()

    def u8(self, value: int) -> None:
        self._buf.append(value)

    def u64(self, value: int) -> None:
        self._buf += _U64.pack(value)

    def blob(self, value: bytes) -> None:
        self._buf += _U32.pack(len(value)) + value

    def framed(self) -> bytes:
        body = bytes(self._buf)
        return bytes([FORMAT_VERSION]) + _U32.pack(zlib.crc32(body)) + body


class Reader:
    def __init__(self, frame: bytes) -> None:
        if len(frame) < 5:
            raise CodecError("frame too short")
        if frame[0] != FORMAT_VERSION:
            raise CodecError(f"unknown format version {frame[0]}")
        (crc,) = _U32.unpack_from(frame, 1)
        self._data = memoryview(frame)[5:]
        if zlib.crc32(self._data) != crc:
            raise CodecError("checksum mismatch")
        self._pos = 0

    def _take(self, size: int) -> memoryview:
        end = self._pos + size
        if end > len(self._data):
            raise CodecError("truncated")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def u8(self) -> int:
        return self._take(1)[0]

    def u64(self) -> int:
        return int(_U64.unpack(self._take(8))[0])

    def blob(self) -> bytes:
        (size,) = _U32.unpack(self._take(4))
        return bytes(self._take(size))

    def count(self, limit: int) -> int:
        n = self.u64()
        if n > limit:
            raise CodecError(f"count {n} over limit {limit}")
        return n

    def at_end(self) -> bool:
        """Nothing left to read (a field added later is read only when it is there)."""
        return self._pos == len(self._data)

    def done(self) -> None:
        if self._pos != len(self._data):
            raise CodecError("trailing bytes")
