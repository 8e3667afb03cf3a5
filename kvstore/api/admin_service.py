"""The ``Admin`` gRPC service: each node reports its own view; the CLI merges the views."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import grpc

from cluster import ClusterConfig
from kvstore.api.kv_service import FORWARDED, is_forwarded
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.model import PlacementSet, RequestId, SetPlacement
from kvstore.process_stats import cpu_seconds, disk_bytes, rss_bytes
from kvstore.runtime.node import (
    NodeRuntime,
    NotLeaderError,
    OverloadedError,
    ProposalDroppedError,
    UnknownShardError,
)
from kvstore.v1 import admin_pb2, admin_pb2_grpc

PLACEMENT_DEADLINE_S = 5.0


class LinkStats(Protocol):
    """What the peer transport reports of one link (the adapters meet in ``server``)."""

    @property
    def peer(self) -> int: ...
    @property
    def connected(self) -> bool: ...
    @property
    def rtt_ms(self) -> float: ...
    @property
    def rtt_avg_ms(self) -> float: ...


class AdminService(admin_pb2_grpc.AdminServicer):
    def __init__(
        self,
        cluster: ClusterConfig,
        runtime: NodeRuntime,
        data_dir: Path | None = None,
        link_stats: Callable[[], Sequence[LinkStats]] | None = None,
        addresses: dict[int, str] | None = None,
    ) -> None:
        self._cluster = cluster
        self._runtime = runtime
        self._data_dir = data_dir
        self._link_stats = link_stats or list
        self._addresses = addresses or {n.node_id: n.address for n in cluster.nodes}
        self._spans = {s.shard_id: s.span for s in cluster.shards}

    async def DescribeCluster(  # noqa: N802
        self,
        _request: admin_pb2.DescribeClusterRequest,
        _context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_pb2.DescribeClusterResponse:
        runtime = self._runtime
        return admin_pb2.DescribeClusterResponse(
            cluster=self._cluster.name,
            nodes=[
                admin_pb2.NodeInfo(node_id=n.node_id, dc=n.dc, address=n.address)
                for n in self._cluster.nodes
            ],
            shards=[
                admin_pb2.ShardInfo(
                    shard_id=s.shard_id,
                    start=s.span.start,
                    end=s.span.end,
                    replicas=list(s.replicas),
                    leader_node_id=(runtime.leader_hint(s.shard_id) or 0)
                    if runtime.hosts(s.shard_id)
                    else 0,
                    preferred_dc=runtime.preferred_dc(s.shard_id)
                    if runtime.hosts(s.shard_id)
                    else self._cluster.default_leader_dc(s.shard_id),
                )
                for s in self._cluster.shards
            ],
        )

    async def NodeStatus(  # noqa: N802 - the gRPC servicer signature
        self, _request: admin_pb2.NodeStatusRequest, _context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.NodeStatusResponse:
        node = self._cluster.node(self._runtime.node_id)
        return admin_pb2.NodeStatusResponse(
            node_id=node.node_id,
            dc=node.dc,
            address=node.address,
            shards=[
                admin_pb2.ShardReplicaStatus(
                    shard_id=s.shard_id,
                    start=self._spans[s.shard_id].start,
                    end=self._spans[s.shard_id].end,
                    role=s.role,
                    promised_ballot=s.promised,
                    leader_node_id=s.leader_node_id,
                    chosen_through=s.chosen_through,
                    applied_slot=s.applied_slot,
                    lease=s.lease,
                    revision=s.revision,
                    preferred_dc=s.preferred_dc,
                    staleness_bound_ms=-1
                    if s.staleness_bound_ms is None
                    else math.ceil(s.staleness_bound_ms),
                )
                for s in self._runtime.status()
            ],
            peers=[
                admin_pb2.PeerLink(
                    node_id=link.peer,
                    dc=self._cluster.node(link.peer).dc,
                    connected=link.connected,
                    rtt_ms=link.rtt_ms,
                    rtt_avg_ms=link.rtt_avg_ms,
                )
                for link in self._link_stats()
            ],
            cpu_seconds=cpu_seconds(),
            rss_bytes=rss_bytes(),
            disk_bytes=disk_bytes(self._data_dir) if self._data_dir is not None else 0,
        )

    async def TransferLeader(  # noqa: N802
        self, request: admin_pb2.TransferLeaderRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.TransferLeaderResponse:
        """Unknown shard or node: ``NOT_FOUND``; a node that holds no replica of the shard:
        ``INVALID_ARGUMENT``; a shard this node does not host: ``NOT_FOUND`` (ask its
        replicas)."""
        if request.shard_id not in self._spans:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"shard {request.shard_id} does not exist"
            )
        if request.to_node_id not in {n.node_id for n in self._cluster.nodes}:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"node {request.to_node_id} does not exist"
            )
        replicas = self._cluster.shard(request.shard_id).replicas
        if request.to_node_id not in replicas:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"node {request.to_node_id} holds no replica of shard {request.shard_id}"
                f" (its replicas: {', '.join(map(str, replicas))})",
            )
        try:
            started = self._runtime.transfer_leadership(request.shard_id, request.to_node_id)
            leader = self._runtime.leader_hint(request.shard_id) or 0
        except UnknownShardError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        return admin_pb2.TransferLeaderResponse(started=started, leader_node_id=leader)

    async def SetPlacement(  # noqa: N802
        self, request: admin_pb2.SetPlacementRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.SetPlacementResponse:
        """Proposed at the shard's leader (asked of any node: it finds the leader)."""
        if request.shard_id not in self._spans:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no shard {request.shard_id}")
        spec = self._cluster.shard(request.shard_id)
        replica_dcs = sorted(self._cluster.node(r).dc for r in spec.replicas)
        if request.leader_dc and request.leader_dc not in replica_dcs:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"shard {request.shard_id} has no replica in {request.leader_dc!r};"
                f" its datacenters: {', '.join(replica_dcs)}",
            )
        command = SetPlacement(RequestId(0, 0), request.leader_dc)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PLACEMENT_DEADLINE_S
        candidates = list(spec.replicas)
        while loop.time() < deadline:
            if self._runtime.hosts(request.shard_id):
                try:
                    result = await self._runtime.submit(request.shard_id, command)
                except NotLeaderError as exc:
                    if exc.leader_hint:
                        candidates.insert(0, exc.leader_hint)
                except (ProposalDroppedError, OverloadedError):
                    await asyncio.sleep(0.05)
                    continue
                else:
                    assert isinstance(result, PlacementSet)
                    return admin_pb2.SetPlacementResponse(
                        preferred_dc=self._cluster.leader_dc(request.shard_id, result.leader_dc),
                        leader_node_id=self._runtime.leader_hint(request.shard_id) or 0,
                    )
            if is_forwarded(context):
                break  # the asking node tries the next replica
            for node in candidates:
                if node == self._runtime.node_id:
                    continue
                try:
                    async with grpc.aio.insecure_channel(
                        self._addresses[node], options=CHANNEL_OPTIONS
                    ) as channel:
                        response: admin_pb2.SetPlacementResponse = await admin_pb2_grpc.AdminStub(
                            channel
                        ).SetPlacement(request, timeout=1.0, metadata=(FORWARDED,))
                        return response
                except grpc.aio.AioRpcError:
                    continue
            await asyncio.sleep(0.1)
        return await context.abort(
            grpc.StatusCode.UNAVAILABLE, f"shard {request.shard_id}: no leader took the placement"
        )
