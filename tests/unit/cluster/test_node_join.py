"""A node that joins: what a join may name (``kvstore.api.node_table.checked_join``, at and
over its limits) and how the config takes it in (``ClusterConfig.admit``)."""

from __future__ import annotations

import pytest

from cluster import ClusterConfig, KeySpan, NodeSpec, ShardSpec
from kvstore.api.node_table import JoinRefusedError, checked_join
from kvstore.model.commands import ADDRESS_BYTES_MAX


def config() -> ClusterConfig:
    return ClusterConfig(
        name="t",
        tick_ms=10,
        datacenters=("dc1", "dc2", "dc3"),
        nodes=tuple(NodeSpec(n, f"dc{n}", f"127.0.{n}.1:7000") for n in (1, 2, 3)),
        shards=(ShardSpec(1, KeySpan(b"", b""), (1, 2, 3), None),),
    )


def test_a_new_node_is_admitted_once_into_the_shared_config() -> None:
    cluster = config()
    assert cluster.admit(NodeSpec(4, "dc1", "127.0.1.2:7000"))
    assert not cluster.admit(NodeSpec(4, "dc1", "127.0.1.2:7000"))  # known already
    assert not cluster.admit(NodeSpec(5, "dc9", "127.0.9.1:7000"))  # no such datacenter
    assert [n.node_id for n in cluster.nodes] == [1, 2, 3, 4]
    assert cluster.node(4).dc == "dc1"


def test_a_join_names_a_datacenter_of_the_cluster_and_a_host_and_port() -> None:
    cluster = config()
    assert checked_join(cluster, "dc1", "127.0.1.2:7000") is None  # new: to register
    assert checked_join(cluster, "dc1", "127.0.1.2:65535") is None
    assert checked_join(cluster, "dc1", "127.0.1.2:1") is None
    for dc, address in (
        ("dc9", "127.0.1.2:7000"),
        ("", "127.0.1.2:7000"),
        ("dc1", "127.0.1.2"),
        ("dc1", ":7000"),
        ("dc1", "127.0.1.2:0"),
        ("dc1", "127.0.1.2:65536"),
        ("dc1", "127.0.1.2:x"),
        ("dc1", "127.0.1.2:٣"),  # a digit, but not an ASCII one
        ("dc1", "ÿÿÿ:7000"),  # no host name
        ("dc1", "a host:7000"),
        ("dc1", "host\n:7000"),
    ):
        with pytest.raises(JoinRefusedError):
            checked_join(cluster, dc, address)


def test_an_address_is_at_most_its_limit_in_bytes() -> None:
    cluster = config()
    port = ":7000"
    at = "h" * (ADDRESS_BYTES_MAX - len(port)) + port
    assert checked_join(cluster, "dc1", at) is None
    with pytest.raises(JoinRefusedError):
        checked_join(cluster, "dc1", "h" + at)


def test_a_known_address_is_its_node_again_in_its_datacenter_only() -> None:
    cluster = config()
    assert checked_join(cluster, "dc2", "127.0.2.1:7000") == NodeSpec(2, "dc2", "127.0.2.1:7000")
    with pytest.raises(JoinRefusedError, match="node 2"):
        checked_join(cluster, "dc1", "127.0.2.1:7000")


def test_a_refusal_does_not_send_a_huge_input_back() -> None:
    """A status message over gRPC's metadata limit reaches the caller as RESOURCE_EXHAUSTED,
    not as the refusal: the name is shown clipped."""
    for dc, address in (("x" * 200_000, "h:1"), ("dc1", "h" * 900 + ":x")):
        with pytest.raises(JoinRefusedError) as refused:
            checked_join(config(), dc, address)
        assert len(str(refused.value)) < 200
