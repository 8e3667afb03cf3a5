"""The set workload's checker: no acknowledged add is ever lost, nothing appears unbidden.

- lost: an add acknowledged before a read began is missing from that read (or from the
  final read, taken after every fault healed);
- phantom: a read holds an element no add had even started before the read returned;
- adds with unknown outcomes may appear or not, but once a read shows one, every later
  read (begun after that read ended) must show it too ("stable").
Without a final read (the cluster never recovered) the verdict is ``unknown``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.jepsen.workload import SetAdd, SetRead


@dataclass
class SetVerdict:
    verdict: str
    adds: int
    acknowledged: int
    unknown: int
    reads: int
    final_read: bool
    lost: list[int] = field(default_factory=list)
    phantom: list[int] = field(default_factory=list)
    unstable: list[int] = field(default_factory=list)
    unknown_present: int = 0

    @property
    def valid(self) -> bool:
        return self.verdict == "valid"


def check_set(adds: list[SetAdd], reads: list[SetRead]) -> SetVerdict:
    started = {a.element: a.call for a in adds}
    acked = {a.element: a.ret for a in adds if a.ok and a.ret is not None}
    lost: set[int] = set()
    phantom: set[int] = set()
    unstable: set[int] = set()
    ordered = sorted(reads, key=lambda r: r.call)
    for read in ordered:
        lost |= {e for e, ret in acked.items() if ret < read.call and e not in read.elements}
        phantom |= {e for e in read.elements if started.get(e, read.ret + 1) > read.ret}
    for earlier in ordered:
        for later in ordered:
            if later.call > earlier.ret:
                unstable |= earlier.elements - later.elements
    finals = [r for r in reads if r.final]
    unknown = [a for a in adds if a.ret is None]
    seen = set().union(*(r.elements for r in reads)) if reads else set()
    verdict = "invalid" if lost or phantom or unstable else "valid" if finals else "unknown"
    return SetVerdict(
        verdict=verdict,
        adds=len(adds),
        acknowledged=len(acked),
        unknown=len(unknown),
        reads=len(reads),
        final_read=bool(finals),
        lost=sorted(lost),
        phantom=sorted(phantom),
        unstable=sorted(unstable - lost),
        unknown_present=sum(1 for a in unknown if a.element in seen),
    )
