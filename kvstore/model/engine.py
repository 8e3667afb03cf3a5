"""What the state machine needs from storage, and an in-memory implementation of it.

Rules:
- One ``Engine`` is one shard's data inside one write transaction: the caller commits (LMDB)
  or simply keeps (memory) everything the state machine did for one batch, atomically with
  the batch's ``applied_slot``, so a crash can never apply a slot twice.
- ``scan`` returns keys in bytewise order within ``[start, end)`` (``end == b""``: unbounded).
- ``MemoryEngine`` is the reference; the LMDB engine must pass the same contract tests.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Record:
    value: bytes
    create_revision: int
    mod_revision: int
    version: int


class Engine(Protocol):
    def get(self, key: bytes) -> Record | None: ...

    def put(self, key: bytes, record: Record) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def scan(self, start: bytes, end: bytes, limit: int) -> list[tuple[bytes, Record]]: ...

    def meta_get(self, name: bytes) -> bytes | None: ...

    def meta_put(self, name: bytes, value: bytes) -> None: ...

    def meta_delete(self, name: bytes) -> None: ...

    def meta_scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]: ...


class MemoryEngine:
    def __init__(self) -> None:
        self._data: dict[bytes, Record] = {}
        self._keys: list[bytes] = []
        self._meta: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> Record | None:
        return self._data.get(key)

    def put(self, key: bytes, record: Record) -> None:
        if key not in self._data:
            bisect.insort(self._keys, key)
        self._data[key] = record

    def delete(self, key: bytes) -> None:
        if self._data.pop(key, None) is not None:
            del self._keys[bisect.bisect_left(self._keys, key)]

    def scan(self, start: bytes, end: bytes, limit: int) -> list[tuple[bytes, Record]]:
        out: list[tuple[bytes, Record]] = []
        for key in self._keys[bisect.bisect_left(self._keys, start) :]:
            if (end and key >= end) or (limit and len(out) >= limit):
                break
            out.append((key, self._data[key]))
        return out

    def meta_get(self, name: bytes) -> bytes | None:
        return self._meta.get(name)

    def meta_put(self, name: bytes, value: bytes) -> None:
        self._meta[name] = value

    def meta_delete(self, name: bytes) -> None:
        self._meta.pop(name, None)

    def meta_scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        return sorted((k, v) for k, v in self._meta.items() if k.startswith(prefix))
