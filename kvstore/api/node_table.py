"""Nodes that join a running cluster (``kvstore serve --join``): checked, told to every node,
and learned from peers.

Rules:
- The meta range registers a node and gives it its id (``AddNode``: one log, so no id is
  handed out twice, and a join retried gets the same id). The configured nodes are the
  config file's; a joined node is known everywhere else by being told.
- The node that registered a join tells every node it knows (``Admin.AdmitNodes``, best
  effort, in parallel), and every node asks a random peer for its node list every
  ``SYNC_S``: one that was down or cut off when told learns it then. Nodes are only ever
  added, so a list from any peer is safe to take in.
- A node admitted is in this node's config at once (``ClusterConfig.admit``: every part of
  the node shares it), gets a peer link, and is stored on disk, so a restart knows it
  before it hears from anyone.
- A node removed (``kvstore node remove``, once it holds no replica) is told and learned
  the same way, and stored: it stays in the config (old descriptors may name it), but
  leaves the node list, takes no replica again, and its address may join anew.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from typing import TypeVar

import grpc
import structlog

from cluster import ClusterConfig, NodeSpec
from kvstore.api.kv_service import FORWARDED
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.model.commands import ADDRESS_BYTES_MAX
from kvstore.v1 import admin_pb2, admin_pb2_grpc

SYNC_S = 5.0  # how often a node asks a peer for the nodes it knows
TELL_TIMEOUT_S = 2.0
PORT_MAX = 65535
SHOWN_CHARS_MAX = 64  # of a refused name or address, in a refusal
R = TypeVar("R")


class JoinRefusedError(Exception):
    """A join that cannot be registered as asked (the message says why, in one line)."""


def checked_join(
    cluster: ClusterConfig, dc: str, address: str, removed: Collection[int] = ()
) -> NodeSpec | None:
    """Refuse a join that names no datacenter of the cluster or no ``host:port``, or an
    address a node of another datacenter has. A node already known at ``address`` in
    ``dc``: that node (a join retried); None: a new one, for the meta range to register.
    The ``removed`` nodes' addresses are free again."""
    if dc not in cluster.datacenters:
        raise JoinRefusedError(
            f"datacenter {_shown(dc)} is not one of the cluster's"
            f" ({', '.join(cluster.datacenters)})"
        )
    if len(address.encode()) > ADDRESS_BYTES_MAX:
        raise JoinRefusedError(f"address over {ADDRESS_BYTES_MAX} bytes")
    host, _, port = address.rpartition(":")
    if (
        not host
        or not host.isascii()
        or not host.isprintable()
        or " " in host
        or not port.isascii()
        or not port.isdigit()
        or not 1 <= int(port) <= PORT_MAX
    ):
        raise JoinRefusedError(f"address {_shown(address)}: expected HOST:PORT")
    for node in cluster.nodes:
        if node.address == address and node.node_id not in removed:
            if node.dc != dc:
                raise JoinRefusedError(f"{address} is node {node.node_id}'s, in {node.dc}")
            return node
    return None


def _shown(text: str) -> str:
    """``text`` as a refusal names it: a caller's huge input is not sent back whole (a
    status over gRPC's metadata limit reaches the caller as RESOURCE_EXHAUSTED)."""
    return repr(text) if len(text) <= SHOWN_CHARS_MAX else f"{text[:SHOWN_CHARS_MAX]!r}..."


def node_info(spec: NodeSpec) -> admin_pb2.NodeInfo:
    return admin_pb2.NodeInfo(node_id=spec.node_id, dc=spec.dc, address=spec.address)


def spec_of(info: admin_pb2.NodeInfo) -> NodeSpec:
    return NodeSpec(info.node_id, info.dc, info.address)


class NodeTable:
    """This node's side of the node list: admitting, telling, asking."""

    def __init__(
        self,
        cluster: ClusterConfig,
        node_id: int,
        addresses: dict[int, str],
        admit: Callable[[NodeSpec], bool],
        *,
        removed: set[int],
        store_removed: Callable[[int], None],
    ) -> None:
        """``admit``: the server's (config, links, disk); False if known already.
        ``removed``: the nodes removed, as the disk kept them; ``store_removed`` keeps one."""
        self._cluster = cluster
        self._me = node_id
        self._addresses = addresses
        self._admit = admit
        self.removed = removed
        self._store_removed = store_removed
        self._rng = random.Random()
        self._task: asyncio.Task[None] | None = None
        self._log = structlog.get_logger("kvstore.nodes").bind(node=node_id)

    def admit(self, specs: Sequence[NodeSpec]) -> int:
        """Take in nodes told or learned (ids 0 and unknown datacenters are ignored)."""
        admitted = 0
        for spec in specs:
            if (
                spec.node_id <= 0
                or spec.node_id in self.removed
                or spec.dc not in self._cluster.datacenters
                or not spec.address
            ):
                continue
            if self._admit(spec):
                admitted += 1
                self._log.info("node_admitted", joined=spec.node_id, dc=spec.dc)
        return admitted

    def remove(self, node_ids: Iterable[int]) -> int:
        """Take in removals told or learned; how many were new here."""
        fresh = [n for n in node_ids if n not in self.removed and n != self._me]
        for node_id in fresh:
            self.removed.add(node_id)
            self._store_removed(node_id)
            self._log.info("node_removed", removed=node_id)
        return len(fresh)

    def listed(self) -> list[NodeSpec]:
        """The cluster's nodes, the removed ones left out."""
        return [n for n in self._cluster.nodes if n.node_id not in self.removed]

    def removed_specs(self) -> list[NodeSpec]:
        """The removed nodes this node knew before they went (id, datacenter, address)."""
        return [n for n in self._cluster.nodes if n.node_id in self.removed]

    async def tell_everyone(self, specs: Sequence[NodeSpec], removed: Sequence[int] = ()) -> None:
        request = admin_pb2.AdmitNodesRequest(
            nodes=[node_info(s) for s in specs], removed=list(removed)
        )

        async def tell(node_id: int) -> None:
            await self._ask(
                node_id,
                lambda stub: stub.AdmitNodes(
                    request, timeout=TELL_TIMEOUT_S, metadata=(FORWARDED,)
                ),
            )

        others = self._others()
        results = await asyncio.gather(*(tell(n) for n in others), return_exceptions=True)
        missed = [n for n, r in zip(others, results, strict=True) if isinstance(r, Exception)]
        if missed:
            self._log.info("nodes_not_told", missed=missed)  # they learn it by asking

    def start(self) -> None:
        self._task = asyncio.create_task(self._sync_forever())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _sync_forever(self) -> None:
        while True:
            await asyncio.sleep(SYNC_S * self._rng.uniform(0.8, 1.2))
            await self.sync_once(peers=1)

    async def sync_once(self, peers: int = 3) -> None:
        """Ask up to ``peers`` random peers for the nodes they know, and take them in."""
        others = self._others()
        for peer in self._rng.sample(others, min(peers, len(others))):
            try:
                view = await self._ask(
                    peer,
                    lambda stub: stub.DescribeCluster(
                        admin_pb2.DescribeClusterRequest(), timeout=TELL_TIMEOUT_S
                    ),
                )
            except grpc.aio.AioRpcError:
                continue
            self.admit([spec_of(n) for n in view.nodes])
            self.remove(view.removed_nodes)

    def _others(self) -> list[int]:
        return [n.node_id for n in self.listed() if n.node_id != self._me]

    async def _ask(self, peer: int, call: Callable[[admin_pb2_grpc.AdminStub], Awaitable[R]]) -> R:
        async with grpc.aio.insecure_channel(
            self._addresses[peer], options=CHANNEL_OPTIONS
        ) as channel:
            return await call(admin_pb2_grpc.AdminStub(channel))
