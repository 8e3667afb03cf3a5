"""A shard's state-machine snapshot: every record and every metadata entry (revision,
applied slot, sessions), in one checksummed frame. Pure: works on any ``Engine``."""

from __future__ import annotations

from kvstore.model.codec import Reader, Writer
from kvstore.model.engine import Engine, Record

ROWS_MAX = 1 << 40


def dump(engine: Engine) -> bytes:
    w = Writer()
    rows = engine.scan(b"", b"", 0)
    w.u64(len(rows))
    for key, record in rows:
        w.blob(key)
        w.blob(record.value)
        w.u64(record.create_revision)
        w.u64(record.mod_revision)
        w.u64(record.version)
    meta = engine.meta_scan(b"")
    w.u64(len(meta))
    for name, value in meta:
        w.blob(name)
        w.blob(value)
    return w.framed()


def restore(engine: Engine, data: bytes) -> None:
    """Replace everything in ``engine`` with the snapshot (verified before anything changes)."""
    r = Reader(data)
    rows = [
        (r.blob(), Record(r.blob(), r.u64(), r.u64(), r.u64())) for _ in range(r.count(ROWS_MAX))
    ]
    meta = [(r.blob(), r.blob()) for _ in range(r.count(ROWS_MAX))]
    r.done()
    for key, _ in engine.scan(b"", b"", 0):
        engine.delete(key)
    for name, _ in engine.meta_scan(b""):
        engine.meta_delete(name)
    for key, record in rows:
        engine.put(key, record)
    for name, value in meta:
        engine.meta_put(name, value)
