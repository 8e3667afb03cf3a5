"""One replica-set change of one range, checked before it is proposed (issue 21): what
``kvstore replica move / add / remove`` and ``node drain / replace`` ask for, turned into
the new replica set, or the reason it cannot be.

The rules (each refusal names the one it broke): the nodes exist; a node added holds no
replica of the range yet and one removed holds one; no node is both; at most
``replicas_per_dc`` replicas in one datacenter (so never two on one node, a set has none);
at least one replica left; and a majority of the new set already replicates the range,
which the state machine also demands of ``Reconfigure`` (the successor's first state is
made only by replicas of both configurations).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from cluster.ranges import RangeDescriptor


class ChangeRefusedError(ValueError):
    """The change breaks a rule; ``unknown``: because it names a node that does not exist."""

    def __init__(self, reason: str, *, unknown: bool = False) -> None:
        super().__init__(reason)
        self.unknown = unknown


def changed_replicas(
    d: RangeDescriptor,
    add: Iterable[int],
    remove: Iterable[int],
    dc_of: Mapping[int, str],
    replicas_per_dc: int,
) -> tuple[int, ...]:
    """The range's replicas after adding ``add`` and removing ``remove`` (sorted)."""
    adding, removing = sorted(set(add)), sorted(set(remove))
    if not adding and not removing:
        raise ChangeRefusedError("name a node to add or to remove")
    for node in [*adding, *removing]:
        if node not in dc_of:
            raise ChangeRefusedError(f"node {node} does not exist", unknown=True)
    both = sorted(set(adding) & set(removing))
    if both:
        raise ChangeRefusedError(f"node {both[0]} is both added and removed")
    for node in adding:
        if node in d.replicas:
            raise ChangeRefusedError(f"node {node} holds a replica of shard {d.range_id} already")
    for node in removing:
        if node not in d.replicas:
            raise ChangeRefusedError(f"node {node} holds no replica of shard {d.range_id}")
    replicas = tuple(sorted((set(d.replicas) - set(removing)) | set(adding)))
    if not replicas:
        raise ChangeRefusedError(f"shard {d.range_id} would have no replica left")
    crowded = sorted(
        dc for dc, count in Counter(dc_of[r] for r in replicas).items() if count > replicas_per_dc
    )
    if crowded:
        raise ChangeRefusedError(
            f"{crowded[0]} would hold more than [placement] replicas_per_dc ="
            f" {replicas_per_dc} replica(s) of shard {d.range_id}"
        )
    kept = len(set(replicas) & set(d.replicas))
    if kept < len(replicas) // 2 + 1:
        raise ChangeRefusedError(
            f"only {kept} of the {len(replicas)} new replicas hold shard {d.range_id} already,"
            " not a majority: change fewer at once"
        )
    return replicas


def colocating_step(
    left: Sequence[int], right: Sequence[int], dc_of: Mapping[int, str]
) -> tuple[list[int], list[int]]:
    """One step of moving a range on ``left`` onto ``right`` (a frozen range's replicas):
    (nodes to add, nodes to remove). A replica of ``right`` in for one of ``left`` of the
    same datacenter where there is such a pair, so each datacenter keeps its count; else
    an addition alone, or a removal alone, bringing the sizes together."""
    into = sorted(r for r in right if r not in left)
    out = sorted(r for r in left if r not in right)
    for added in into:
        same_dc = [r for r in out if dc_of.get(r) == dc_of.get(added)]
        if same_dc:
            return [added], [same_dc[0]]
    if into and (len(left) <= len(right) or not out):
        return [into[0]], []
    return [], [out[0]]
