"""The datacenters a node checks a replica change with (``kvstore.api.admin_service.replica_dcs``
fed to ``cluster.replica_change.changed_replicas``) when a replica of the range is on a
node removed meanwhile: a change onto it landed after ``node remove`` found it empty."""

from __future__ import annotations

import pytest

from cluster import NodeSpec, RangeDescriptor
from cluster.replica_change import ChangeRefusedError, changed_replicas
from kvstore.api.admin_service import replica_dcs

NODES = [NodeSpec(n, f"dc{(n + 1) // 2}", f"h:{n}") for n in range(1, 7)]
LISTED = [n for n in NODES if n.node_id != 5]  # node 5 was removed
ON_REMOVED = RangeDescriptor(1, b"a", b"b", (1, 3, 5))


def test_the_replica_on_the_removed_node_can_be_replaced_in_its_datacenter() -> None:
    dc_of = replica_dcs(ON_REMOVED, LISTED, NODES)
    assert changed_replicas(ON_REMOVED, [6], [5], dc_of, 1) == (1, 3, 6)


def test_another_replica_moves_while_one_is_on_the_removed_node() -> None:
    """Before, the check looked the removed node's datacenter up among the listed ones and
    failed with a KeyError (an INTERNAL status with a traceback)."""
    dc_of = replica_dcs(ON_REMOVED, LISTED, NODES)
    assert changed_replicas(ON_REMOVED, [2], [1], dc_of, 1) == (2, 3, 5)
    with pytest.raises(ChangeRefusedError, match="dc3 would hold more"):
        changed_replicas(ON_REMOVED, [6], [], dc_of, 1)


def test_a_removed_node_is_never_added_back() -> None:
    d = RangeDescriptor(2, b"b", b"c", (1, 3, 6))
    with pytest.raises(ChangeRefusedError, match="node 5 does not exist") as refused:
        changed_replicas(d, [5], [6], replica_dcs(d, LISTED, NODES), 1)
    assert refused.value.unknown


def test_a_replica_on_a_node_never_known_here_counts_as_its_own_datacenter() -> None:
    d = RangeDescriptor(3, b"c", b"d", (1, 3, 9))
    dc_of = replica_dcs(d, LISTED, NODES)
    assert changed_replicas(d, [6], [9], dc_of, 1) == (1, 3, 6)
    assert changed_replicas(d, [2], [1], dc_of, 1) == (2, 3, 9)
