"""One node, assembled: its LMDB store, its runtime, and one gRPC server for peers and clients.

This is the composition root: the only place that builds the concrete adapters and wires
them together (storage, runtime, peer transport, KV service).

Besides kvstore's own services the server carries two standard ones, so stock tools work:
``grpc.health.v1.Health`` (``grpc_health_probe``, load balancers, Kubernetes probes) and
server reflection (``grpcurl list``). Health, for the whole server (``""``) and for
``kvstore.v1.KV``: NOT_SERVING while the node starts and from the moment it starts to stop;
SERVING once its runtime and peer transport run (it can route any request).

The port is bound exclusively (``kvstore.channels.SERVER_OPTIONS``): gRPC sets SO_REUSEPORT
by default on Linux, which let a second node on the same address start and share the port.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cluster import ClusterConfig, NodeSpec
from kvstore.api.admin_service import AdminService
from kvstore.api.counters_service import CountersService
from kvstore.api.kv_service import KvService
from kvstore.api.lease_service import LeaseService
from kvstore.api.malformed import RejectMalformedRequests
from kvstore.api.node_table import NodeTable
from kvstore.api.operator_states import OperatorStates
from kvstore.api.own_call import OwnCall
from kvstore.api.rebalancer import Rebalancer
from kvstore.api.streams_service import StreamsService
from kvstore.channels import SERVER_OPTIONS
from kvstore.net.peer_transport import LinkDelay, PeerTransport
from kvstore.runtime.node import NodeRuntime
from kvstore.storage import NodeStore
from kvstore.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    counters_pb2,
    counters_pb2_grpc,
    kv_pb2,
    kv_pb2_grpc,
    peer_pb2_grpc,
    streams_pb2,
    streams_pb2_grpc,
)
from paxos import Message

KV_SERVICE = kv_pb2.DESCRIPTOR.services_by_name["KV"].full_name  # "kvstore.v1.KV"
HEALTH_SERVICES = ("", KV_SERVICE)  # "": the server as a whole, as the protocol defines
REFLECTED_SERVICES = (
    KV_SERVICE,
    kv_pb2.DESCRIPTOR.services_by_name["Lease"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
    streams_pb2.DESCRIPTOR.services_by_name["Streams"].full_name,
    counters_pb2.DESCRIPTOR.services_by_name["Counters"].full_name,
    health.SERVICE_NAME,
    reflection.SERVICE_NAME,
)


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
        map_size: int | None = None,
        routes: dict[int, str] | None = None,
        founding: bool = False,
        config_text: str = "",
        joined: bool = False,
        members: Sequence[NodeSpec] = (),
    ) -> None:
        """``routes`` dials some nodes at another address than the configured one (a proxy
        in front of them: the fault-test harness uses it); listening is unaffected.
        ``founding``: a new data directory belongs to a member of a new cluster, whose
        replicas vote from the start; otherwise (the default, and always for a directory
        that exists) a node that starts without its data rejoins every group before it
        votes (``paxos.rejoin``). ``map_size``: bytes LMDB may hold (default: the config's
        ``[storage] map_size_mb``). ``config_text``: the config file ``cluster`` was read
        from (what a node that joins is given). ``joined``: this node joined a running
        cluster (``kvstore serve --join``): its directory keeps the config. ``members``:
        nodes that joined the cluster, as the caller was told (admitted and kept on disk)."""
        self.cluster = cluster
        self.node_id = node_id
        self._store = NodeStore(
            data_dir, map_size=map_size if map_size is not None else cluster.map_size_mb << 20
        )
        self.identity = self._store.claim(
            cluster.name,
            node_id,
            founding=founding,
            cluster_id=cluster.identity,
            incarnation=random.SystemRandom().randrange(1, 1 << 63),
        )
        if joined:
            self._store.save_config(config_text)
        # The nodes that joined, as this node last heard (from disk), and as it was told.
        for member, dc_name, address in self._store.members():
            cluster.admit(NodeSpec(member, dc_name, address))
        for spec in members:
            cluster.admit(spec)
            self._store.save_member(spec.node_id, spec.dc, spec.address)
        self.spec = cluster.node(node_id)
        self._routes = routes or {}
        addresses = {n.node_id: self._routes.get(n.node_id, n.address) for n in cluster.nodes}
        self._addresses = addresses
        wan = cluster.wan
        dc = self.spec.dc
        one_way_s = {n.node_id: wan.one_way_ms(dc, n.dc) / 1000 for n in cluster.nodes}
        self._one_way_s = one_way_s
        self._transport = PeerTransport(
            cluster.identity,
            node_id,
            addresses,
            self._deliver,
            delays={n.node_id: self._link_delay(n) for n in cluster.nodes},
            incarnation=self.identity.incarnation,
            heard=self._heard,
            restarted=self._restarted,
            host_heard=self._host_heard,
        )
        self.runtime = NodeRuntime(
            cluster,
            node_id,
            self._store,
            self._transport.send,
            paxos_overrides=paxos_overrides,
            send_host=self._transport.send_host,
            disk_incarnation=self.identity.incarnation,
        )
        self._kv = KvService(
            cluster, self.runtime, self.spec.dc, addresses, forward_delay_s=one_way_s
        )
        self._server = grpc.aio.server(
            interceptors=[RejectMalformedRequests()], options=SERVER_OPTIONS
        )
        self._health = health.aio.HealthServicer()
        self._log = structlog.get_logger("kvstore.server").bind(node=node_id, dc=self.spec.dc)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(REFLECTED_SERVICES, self._server)
        peer_pb2_grpc.add_PeerServicer_to_server(self._transport, self._server)
        kv_pb2_grpc.add_KVServicer_to_server(self._kv, self._server)
        self._nodes = NodeTable(
            cluster,
            node_id,
            addresses,
            self._admit,
            removed=self._store.removed(),
            store_removed=self._store.save_removed,
        )
        operator = OperatorStates(self._kv)
        self._admin = AdminService(
            cluster,
            self.runtime,
            data_dir,
            self._transport.link_stats,
            addresses,
            incarnation_of=self._disk_incarnation_of,
            nodes=self._nodes,
            config_text=config_text,
            operator=operator,
        )
        admin_pb2_grpc.add_AdminServicer_to_server(self._admin, self._server)
        admin = self._admin
        self._rebalancer = Rebalancer(
            self.runtime,
            operator,
            change=lambda request: admin.ChangeReplicas(request, cast(Any, OwnCall())),
            nodes=self._nodes.listed,
            removed=self._nodes.removed_specs,
            channel=self._kv.channel,
            replicas_per_dc=cluster.placement.replicas_per_dc,
            at_once=cluster.placement.moves_at_once,
        )
        self._leases = LeaseService(cluster, self.runtime, addresses, self._admin.detach_leases)
        kv_pb2_grpc.add_LeaseServicer_to_server(self._leases, self._server)
        self._kv.lease_known = self._leases.known
        self._streams = StreamsService(self._kv, self._admin.split_at, self.runtime.watches)
        streams_pb2_grpc.add_StreamsServicer_to_server(self._streams, self._server)
        counters = CountersService(self._kv)
        counters_pb2_grpc.add_CountersServicer_to_server(counters, self._server)
        self.runtime.on_leases_to_detach = self._admin.leases_to_detach
        self.runtime.on_split_wanted = self._admin.split_wanted
        self.runtime.on_merge_wanted = self._admin.merge_wanted
        self.runtime.on_merge_unfinished = self._admin.merge_unfinished
        self.runtime.on_ranges_to_record = self._admin.ranges_to_record

    def _disk_incarnation_of(self, node: int) -> int:
        """A node's data directory's incarnation: this one's own, a peer's as its transport's
        last hello said (0: none heard). What a shard's new configuration lists its replicas
        with (``Reconfigure.disks``)."""
        if node == self.runtime.node_id:
            return self.identity.incarnation
        return self._transport.incarnation_of(node)

    def _link_delay(self, n: NodeSpec) -> LinkDelay:
        wan, dc = self.cluster.wan, self.spec.dc
        return LinkDelay(wan.one_way_ms(dc, n.dc) / 1000, wan.jitter_between_ms(dc, n.dc) / 1000)

    def _admit(self, spec: NodeSpec) -> bool:
        """A node joined: into the config every part shares, the address book, a peer
        link, the node layer's liveness watch, and the disk (a restart knows it)."""
        if not self.cluster.admit(spec):
            return False
        self._addresses[spec.node_id] = self._routes.get(spec.node_id, spec.address)
        delay = self._link_delay(spec)
        self._one_way_s[spec.node_id] = delay.one_way_s
        self._transport.add_peer(spec.node_id, delay)
        self.runtime.add_peer(spec.node_id)
        self._store.save_member(spec.node_id, spec.dc, spec.address)
        return True

    def _deliver(self, shard_id: int, msg: Message) -> None:
        self.runtime.deliver(shard_id, msg)

    def _heard(self, peer: int) -> None:
        self.runtime.heard(peer)

    def _restarted(self, peer: int) -> None:
        self.runtime.peer_restarted(peer)

    def _host_heard(
        self, peer: int, shard_id: int, descriptor: bytes, incarnation: int, current: bytes
    ) -> None:
        self.runtime.deliver_host(peer, shard_id, descriptor, incarnation, current)

    async def start(self) -> None:
        """Listen, then run. On ``StartupError`` nothing runs and nothing is left to stop
        (the gRPC server is stopped here, before the caller's event loop can close under
        it: a server collected after its loop closed prints an "Event loop is closed"
        traceback)."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        address = self.spec.address
        try:
            port = self._server.add_insecure_port(address)
        except RuntimeError:
            port = 0  # grpc raises for an address it cannot bind (older versions return 0)
        if port == 0:
            await self._server.stop(None)
            self._store.close()
            raise StartupError(f"cannot listen on {address} (address in use?)")
        await self._server.start()
        self._log.info("listening", address=address)
        await self.runtime.start()
        self._streams.start()
        self._transport.start()
        self._nodes.start()
        self._rebalancer.start()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace_s: float = 0.5) -> None:
        await self.stop_serving(grace_s)
        await self.runtime.stop()
        self._store.close()

    async def stop_serving(self, grace_s: float | None = 0.5) -> None:
        """Health NOT_SERVING, then stop the peer links, the gRPC server and the channels
        to other nodes: what a node that failed (its runtime may be wedged on a broken
        disk) can still do safely. Every gRPC object must end before the event loop does:
        one left open past it can hang the process at exit (gRPC's poller thread blocks
        writing to a socket the closed loop no longer reads, and its shutdown joins it)."""
        self._admin.close()
        self._rebalancer.close()
        self._nodes.close()
        await self._health.enter_graceful_shutdown()
        await self._transport.stop()
        await self._server.stop(grace_s)
        await self._streams.close()
        await self._kv.close()

    async def _set_health(self, status: int) -> None:
        for service in HEALTH_SERVICES:
            await self._health.set(service, status)
