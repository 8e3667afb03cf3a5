"""The ``Admin`` gRPC service: each node reports its own view; the CLI merges the views."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from cluster import ClusterConfig
from kvstore.process_stats import cpu_seconds, disk_bytes, rss_bytes
from kvstore.runtime.node import NodeRuntime, UnknownShardError
from kvstore.v1 import admin_pb2, admin_pb2_grpc


class AdminService(admin_pb2_grpc.AdminServicer):
    def __init__(
        self, cluster: ClusterConfig, runtime: NodeRuntime, data_dir: Path | None = None
    ) -> None:
        self._cluster = cluster
        self._runtime = runtime
        self._data_dir = data_dir
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
                )
                for s in self._runtime.status()
            ],
            cpu_seconds=cpu_seconds(),
            rss_bytes=rss_bytes(),
            disk_bytes=disk_bytes(self._data_dir) if self._data_dir is not None else 0,
        )

    async def TransferLeader(  # noqa: N802
        self, request: admin_pb2.TransferLeaderRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.TransferLeaderResponse:
        if request.to_node_id not in {n.node_id for n in self._cluster.nodes}:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"no node {request.to_node_id}")
        try:
            started = self._runtime.transfer_leadership(request.shard_id, request.to_node_id)
            leader = self._runtime.leader_hint(request.shard_id) or 0
        except UnknownShardError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        return admin_pb2.TransferLeaderResponse(started=started, leader_node_id=leader)
