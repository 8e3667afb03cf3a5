"""Checks bounded-staleness reads against the register history of the same run.

A read served with ``staleness_bound_ms = B`` (reported by the server) promises: nothing
acknowledged more than B before the read was served is missing. The read was served after
its ``call``, so every write acknowledged before ``call - B`` must be reflected. With unique
values, the value read names the write it came from (the *source*); the read is too stale if
some other write on the key was invoked after the source was acknowledged (so it is later in
every linearization) and was itself acknowledged before ``call - B``. A value no write
produced, or one whose write began after the read returned, is a violation too.

Reads of an absent key take the most favourable source: the initial state or the delete
acknowledged last (a delete with an unknown outcome could be anywhere: not checked).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tests.jepsen.history import Op

WRITES = ("put", "cas", "delete")


@dataclass(frozen=True, slots=True)
class BoundedRead:
    client: int
    call: int  # ns, the harness's monotonic clock, like the register history
    ret: int
    key: str
    output: str | None
    bound_ms: int  # as the reply's header reported it
    served_by_dc: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "client": self.client,
                "call": self.call,
                "return": self.ret,
                "op": "bounded-get",
                "key": self.key,
                "output": self.output,
                "staleness_bound_ms": self.bound_ms,
                "served_by_dc": self.served_by_dc,
            }
        )


@dataclass
class StalenessVerdict:
    verdict: str  # valid | invalid
    reads: int
    violations: list[str] = field(default_factory=list)

    def summary(self, max_staleness_ms: int) -> dict[str, object]:
        """The ``bounded_reads`` entry of ``results.json`` (the first 20 violations)."""
        return {
            "verdict": self.verdict,
            "reads": self.reads,
            "max_staleness_ms": max_staleness_ms,
            "violations": self.violations[:20],
        }


def check_bounded_reads(history: list[Op], reads: list[BoundedRead]) -> StalenessVerdict:
    by_key: dict[str, list[Op]] = {}
    for op in history:
        if op.op in WRITES:
            by_key.setdefault(op.key, []).append(op)
    violations = []
    for read in reads:
        problem = _problem(read, by_key.get(read.key, []))
        if problem is not None:
            violations.append(f"{read.key}: read {read.output!r} at {read.call} ns: {problem}")
    return StalenessVerdict("invalid" if violations else "valid", len(reads), violations)


def _problem(read: BoundedRead, writes: list[Op]) -> str | None:
    applied = [w for w in writes if w.ok or w.unknown]  # a refused write changed nothing
    if read.output is None:
        deletes = [w for w in applied if w.op == "delete" and w.call < read.ret]
        if any(d.unknown for d in deletes):
            return None
        source_ret = max((d.ret for d in deletes if d.ret is not None), default=-1)
    else:
        source = next((w for w in applied if w.value == read.output), None)
        if source is None:
            return "no applied write produced this value"
        if source.call > read.ret:
            return "its write began after the read returned"
        if source.ret is None:
            return None  # acknowledged at an unknown time: nothing to order against
        source_ret = source.ret
    deadline = read.call - read.bound_ms * 1_000_000
    for w in applied:
        if w.ok and w.ret is not None and w.call > source_ret and w.ret < deadline:
            return (
                f"misses {w.op} {w.value!r}, acknowledged {(read.call - w.ret) / 1e6:.1f} ms"
                f" before the read, beyond its {read.bound_ms} ms bound"
            )
    return None


def write_bounded_reads(path: Path, reads: list[BoundedRead]) -> None:
    with path.open("w") as f:
        for read in reads:
            f.write(read.to_json() + "\n")
