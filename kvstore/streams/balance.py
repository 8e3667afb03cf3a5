"""Which partition an event processor should take next: the balancing rule, pure.

Rules (Azure Event Hubs' EventProcessorClient, with the store's leases for expiry):
- With ``n`` partitions and ``k`` live processors, each's fair share is ``n // k``, and
  ``n % k`` of them may hold one more. Live: its status record exists (it lives on the
  processor's lease, so a crashed processor's goes by itself). A claim by a processor that
  is not live counts as free.
- A processor below its share takes one partition per cycle: a free one if any (picked at
  random, so processors joining together mostly pick different ones), else it steals one
  from the processor that owns the most, but only from one above the share it may keep
  (never from an owner at or below its fair share).
- A processor at its share takes one more only while fewer than ``n % k`` others hold an
  extra, and only a free one or from an owner with more than ``n // k + 1``.
- Taking is a compare-and-set on the partition's ownership record (``kvstore.streams``), so
  two processors that pick the same one cannot both win; the loser plans again next cycle.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Take:
    partition: int
    owner: str | None  # whose claim it replaces (None: free)


def fair_share(partitions: int, live: int) -> tuple[int, int]:
    """(each live processor's share, how many may hold one more)."""
    return divmod(partitions, max(live, 1))


def plan(
    partitions: int,
    owners: Mapping[int, str],
    live: Collection[str],
    me: str,
    rng: random.Random,
) -> Take | None:
    """The partition ``me`` should take now (None: it holds its share)."""
    if partitions <= 0:
        return None
    alive = set(live) | {me}
    share, extras = fair_share(partitions, len(alive))
    held = {p: o for p, o in owners.items() if o in alive and 0 <= p < partitions}
    counts = Counter(held.values())
    mine = counts[me]
    if mine > share:
        return None
    if mine == share:
        others_with_extra = sum(1 for o, c in counts.items() if o != me and c > share)
        if others_with_extra >= extras:
            return None
        may_rob_above = share + 1  # an owner at its share plus its extra keeps it
    else:
        may_rob_above = share
    free = [p for p in range(partitions) if p not in held]
    if free:
        partition = rng.choice(free)
        return Take(partition, owners.get(partition))
    richest, most = max(
        ((o, c) for o, c in counts.items() if o != me),
        key=lambda oc: (oc[1], oc[0]),
        default=(me, 0),
    )
    if most <= may_rob_above:
        return None
    partition = rng.choice(sorted(p for p, o in held.items() if o == richest))
    return Take(partition, richest)
