"""One node, assembled: its LMDB store, its runtime, and one gRPC server for peers and clients.

This is the composition root: the only place that builds the concrete adapters and wires
them together (storage, runtime, peer transport, KV service).
"""

from __future__ import annotations

import random
from pathlib import Path

import grpc

from cluster import ClusterConfig
from kvstore.api.admin_service import AdminService
from kvstore.api.kv_service import KvService
from kvstore.api.malformed import RejectMalformedRequests
from kvstore.channels import SERVER_OPTIONS
from kvstore.net.peer_transport import LinkDelay, PeerTransport
from kvstore.runtime.node import NodeRuntime
from kvstore.storage import NodeStore
from kvstore.v1 import admin_pb2_grpc, kv_pb2_grpc, peer_pb2_grpc
from paxos import Message


class StartupError(RuntimeError):
    """The node cannot start; the message says why in one line."""


class NodeServer:
    def __init__(
        self,
        cluster: ClusterConfig,
        node_id: int,
        data_dir: Path,
        *,
        paxos_overrides: dict[str, int] | None = None,
        map_size: int = 1 << 30,
        routes: dict[int, str] | None = None,
        founding: bool = False,
    ) -> None:
        """``routes`` dials some nodes at another address than the configured one (a proxy
        in front of them: the fault-test harness uses it); listening is unaffected.
        ``founding``: a new data directory belongs to a member of a new cluster, whose
        replicas vote from the start; otherwise (the default, and always for a directory
        that exists) a node that starts without its data rejoins every group before it
        votes (``paxos.rejoin``)."""
        self.cluster = cluster
        self.node_id = node_id
        self.spec = cluster.node(node_id)
        self._store = NodeStore(data_dir, map_size=map_size)
        self.identity = self._store.claim(
            cluster.name,
            node_id,
            founding=founding,
            incarnation=random.SystemRandom().randrange(1, 1 << 63),
        )
        addresses = {n.node_id: (routes or {}).get(n.node_id, n.address) for n in cluster.nodes}
        wan = cluster.wan
        dc = self.spec.dc
        one_way_s = {n.node_id: wan.one_way_ms(dc, n.dc) / 1000 for n in cluster.nodes}
        self._transport = PeerTransport(
            cluster.name,
            node_id,
            addresses,
            self._deliver,
            delays={
                n.node_id: LinkDelay(one_way_s[n.node_id], wan.jitter_between_ms(dc, n.dc) / 1000)
                for n in cluster.nodes
            },
        )
        self.runtime = NodeRuntime(
            cluster, node_id, self._store, self._transport.send, paxos_overrides=paxos_overrides
        )
        self._kv = KvService(
            cluster, self.runtime, self.spec.dc, addresses, forward_delay_s=one_way_s
        )
        self._server = grpc.aio.server(
            interceptors=[RejectMalformedRequests()], options=SERVER_OPTIONS
        )
        peer_pb2_grpc.add_PeerServicer_to_server(self._transport, self._server)
        kv_pb2_grpc.add_KVServicer_to_server(self._kv, self._server)
        admin_pb2_grpc.add_AdminServicer_to_server(
            AdminService(cluster, self.runtime, data_dir, self._transport.link_stats, addresses),
            self._server,
        )

    def _deliver(self, shard_id: int, msg: Message) -> None:
        self.runtime.deliver(shard_id, msg)

    async def start(self) -> None:
        try:
            port = self._server.add_insecure_port(self.spec.address)
        except RuntimeError as exc:
            raise StartupError(f"cannot listen on {self.spec.address}: {exc}") from None
        if port == 0:
            raise StartupError(f"cannot listen on {self.spec.address} (address in use?)")
        await self._server.start()
        await self.runtime.start()
        self._transport.start()

    async def stop(self, grace_s: float = 0.5) -> None:
        await self._transport.stop()
        await self._server.stop(grace_s)
        await self._kv.close()
        await self.runtime.stop()
        self._store.close()
