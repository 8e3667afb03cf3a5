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
from pathlib import Path

from cluster import ClusterConfig
from kvstore import event_loop
from kvstore.cli_admin import load_config
from kvstore.cli_args import NODE_ID_MAX, NodeFailedError, UserError
from kvstore.local_cluster import DATACENTERS, up
from kvstore.logging import configure
from kvstore.server import NodeServer, StartupError
from kvstore.storage import StoreIdentityError


def serve(args: argparse.Namespace) -> int:
    cluster = load_config(args.config)
    node = args.node if args.node is not None else _node_from_env()
    if node is None:
        node = _this_node(cluster)
    if node not in {n.node_id for n in cluster.nodes}:
        raise UserError(f"node {node} is not in {args.config}")
    data = args.data if args.data is not None else Path("data") / f"n{node}"
    routes = _routes(args.route, cluster)
    configure(json=args.log_format == "json")

    async def run() -> None:
        try:
            server = NodeServer(
                cluster,
                node,
                data,
                routes=routes,
                founding=args.initial_cluster_state == "new",
            )
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
    return 0


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
