"""``kvstore serve`` (one node) and ``kvstore up`` (a local cluster): the commands that run
servers. Imported only by them: the server stack (LMDB, runtime, structlog) is theirs alone.

Every mistake (a bad config, an unknown node, a port in use, a data directory of another
cluster) is one ``UserError`` line and exit code 2, and every server started is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from cluster import ClusterConfig, ClusterConfigError, NodeSpec, parse_cluster_config
from kvstore import event_loop
from kvstore.cli_admin import read_config
from kvstore.cli_args import NODE_ID_MAX, NodeFailedError, UserError
from kvstore.cli_support import ask_any
from kvstore.local_cluster import DATACENTERS, up
from kvstore.logging import configure
from kvstore.server import NodeServer, StartupError
from kvstore.storage import NodeStore, StoreIdentityError
from kvstore.v1 import admin_pb2


def serve(args: argparse.Namespace) -> int:
    if args.join is not None:
        return _serve_joined(args)
    if args.config is None:
        raise UserError("serve needs --config FILE, or --join ENDPOINTS for a new node")
    if args.dc is not None or args.address is not None:
        raise UserError("--dc and --address are for a node that joins (--join)")
    cluster, config_text = read_config(args.config)
    node = args.node if args.node is not None else _node_from_env()
    if node is None:
        node = _this_node(cluster)
    if node not in {n.node_id for n in cluster.nodes}:
        raise UserError(f"node {node} is not in {args.config}")
    data = args.data if args.data is not None else Path("data") / f"n{node}"
    routes = _routes(args.route, cluster)
    configure(json=args.log_format == "json")
    _run_node(
        lambda: NodeServer(
            cluster,
            node,
            data,
            routes=routes,
            founding=args.initial_cluster_state == "new",
            config_text=config_text,
        ),
        node,
        data,
    )
    return 0


def _serve_joined(args: argparse.Namespace) -> int:
    """A new node: registered by the cluster at ENDPOINTS (its id, the config and the node
    list come back), or, started again on the same directory, as it joined then."""
    if args.config is not None or args.node is not None or args.route:
        raise UserError("--join takes no --config, --node or --route: the cluster gives them")
    if args.data is None or args.dc is None or args.address is None:
        raise UserError("--join needs --dc DC, --address HOST:PORT and --data DIR")
    before = _joined_before(args.data)
    if before is not None:
        node, config_text, joined = before
    else:
        _can_listen(args.address)  # else the cluster would list a node that never starts
        node, config_text, joined = event_loop.run(_join(args.join, args.dc, args.address))
    try:
        cluster = parse_cluster_config(config_text)
    except ClusterConfigError as exc:
        raise UserError(f"the cluster's config: {exc}") from None
    configured = {n.node_id for n in cluster.nodes}
    members = [spec for spec in joined if spec.node_id not in configured]
    spec = next((m for m in members if m.node_id == node), None)
    if spec is None:
        raise UserError(f"node {node} is not in the node list the cluster gave")
    if (spec.dc, spec.address) != (args.dc, args.address):
        raise UserError(
            f"{args.data} is node {node}'s, which joined in {spec.dc} at {spec.address}"
        )
    configure(json=args.log_format == "json")
    _run_node(
        lambda: NodeServer(
            cluster, node, args.data, config_text=config_text, joined=True, members=members
        ),
        node,
        args.data,
    )
    return 0


def _can_listen(address: str) -> None:
    host, _, port = address.rpartition(":")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
        family, kind, proto, _, where = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.bind(where)
    except (OSError, ValueError, IndexError) as exc:
        raise UserError(f"cannot listen on {address}: {exc}") from None


def _joined_before(data: Path) -> tuple[int, str, list[NodeSpec]] | None:
    """What a directory that joined before keeps: its node id, the config, the nodes."""
    if not (data / "data.mdb").exists():
        return None
    try:
        store = NodeStore(data)
    except OSError as exc:
        raise UserError(f"cannot use {data}: {exc}") from None
    try:
        joined = store.joined()
        members = [NodeSpec(n, dc, address) for n, dc, address in store.members()]
    finally:
        store.close()
    if joined is None:
        raise UserError(f"{data} holds a configured node's data: serve it with --config")
    return joined[0], joined[1], members


async def _join(endpoints: str, dc: str, address: str) -> tuple[int, str, list[NodeSpec]]:
    request = admin_pb2.JoinClusterRequest(dc=dc, address=address)
    try:
        done: admin_pb2.JoinClusterResponse = await ask_any(
            [e.strip() for e in endpoints.split(",") if e.strip()],
            lambda stub: stub.JoinCluster(request, timeout=15),
        )
    except UserError as exc:
        raise UserError(f"could not join: {exc}") from None
    nodes = [NodeSpec(n.node_id, n.dc, n.address) for n in done.nodes]
    return done.node_id, done.config, nodes


def _run_node(make: Callable[[], NodeServer], node: int, data: Path) -> None:
    async def run() -> None:
        try:
            server = make()
        except StoreIdentityError as exc:
            raise UserError(str(exc)) from None
        except OSError as exc:
            raise UserError(f"cannot use {data}: {exc.strerror or exc}") from None
        try:
            await server.start()  # a StartupError leaves nothing running
        except StartupError as exc:
            raise UserError(str(exc)) from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        stopped = asyncio.create_task(stop.wait())
        failed = asyncio.create_task(server.runtime.failed.wait())
        await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        failed.cancel()
        if server.runtime.failure is not None:
            # Fatal (e.g. fsync failed): stop serving and exit, without waiting on a runtime
            # that may be wedged; recovery from disk is the tested path. Exit code 1, not 2:
            # the node could start, so a supervisor (kvstore up, systemd) restarts it.
            await server.stop_serving(None)
            raise NodeFailedError(f"node {node} failed: {server.runtime.failure}")
        await server.stop()

    event_loop.run(run())


def _node_from_env() -> int | None:
    """``KVSTORE_NODE_ID``, read by ``serve`` alone (any other command ignores it)."""
    raw = os.environ.get("KVSTORE_NODE_ID", "").strip()
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= NODE_ID_MAX:
        raise UserError(f"KVSTORE_NODE_ID={raw!r}: expected a node id (a positive integer)")
    return int(raw)


def _routes(specs: list[str], cluster: ClusterConfig) -> dict[int, str]:
    routes: dict[int, str] = {}
    known = {n.node_id for n in cluster.nodes}
    for spec in specs:
        node, sep, address = spec.partition("=")
        if (
            not sep
            or not node.isascii()
            or not node.isdigit()
            or int(node) not in known
            or ":" not in address
        ):
            raise UserError(f"--route {spec!r}: expected NODE=HOST:PORT with a node of the cluster")
        routes[int(node)] = address
    return routes


def _this_node(cluster: ClusterConfig) -> int:
    names = {socket.gethostname(), socket.getfqdn()}
    mine = [n.node_id for n in cluster.nodes if n.address.rpartition(":")[0] in names]
    if len(mine) != 1:
        raise UserError(
            "cannot tell which node this is from the host name: pass --node ID"
            " (or set KVSTORE_NODE_ID)"
        )
    return mine[0]


def run_up(args: argparse.Namespace) -> int:
    base_port = args.base_port if args.base_port is not None else 7000
    last_port = base_port + len(DATACENTERS) * (args.nodes_per_dc or 1)
    if last_port > 65535:
        raise UserError(f"--base-port {base_port}: node ports would pass 65535")
    try:
        return up(
            args.dir,
            nodes_per_dc=args.nodes_per_dc,
            base_port=args.base_port,
            wan_latency_ms=args.wan_latency_ms,
            wan_jitter_ms=args.wan_jitter_ms,
            restart=not args.no_restart,
            split_size_mb=args.split_size_mb,
            shards=args.shards,
        )
    except ValueError as exc:  # the directory's own cluster.toml: unreadable or another WAN
        raise UserError(" ".join(str(exc).split())) from None
    except OSError as exc:
        raise UserError(f"cannot use {args.dir}: {exc.strerror or exc}") from None
