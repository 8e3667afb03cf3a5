"""``kvstore status | transfer-leader | shards | split | merge | config check``: operators'.

``status`` merges every endpoint's own view (``Admin.NodeStatus``): it exits 0 when at least
one node answered (the others show as DOWN), and 2 naming the silent endpoints when none did.
``transfer-leader`` checks the shard and the node against the shard map first, so an unknown
one is named as such (``NOT_FOUND``) rather than reported as a missing leader.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import grpc

from cluster import META_RANGE_ID, ClusterConfig, ClusterConfigError, parse_cluster_config
from kvstore import event_loop, geo_cli
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.cli_args import UserError, arg_bytes
from kvstore.cli_support import (
    ask_any,
    bytes_fields,
    describe_cluster,
    endpoint_list,
    node_views,
    range_text,
    show,
    table,
    text,
)
from kvstore.v1 import admin_pb2, admin_pb2_grpc

CONFIG_BYTES_MAX = 16 << 20  # a cluster config is a few KiB; a huge file is a wrong file


def load_config(path: Path) -> ClusterConfig:
    """The cluster config in ``path``; any problem with it is one ``UserError`` line."""
    return read_config(path)[0]


def read_config(path: Path) -> tuple[ClusterConfig, str]:
    """The cluster config in ``path``, and its text; any problem is one ``UserError``."""
    try:
        with path.open("rb") as f:
            raw = f.read(CONFIG_BYTES_MAX + 1)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > CONFIG_BYTES_MAX:
        raise UserError(f"{path}: over {CONFIG_BYTES_MAX} bytes; not a cluster config")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: not UTF-8 text (byte {exc.start}); not a cluster config"
        ) from None
    try:
        return parse_cluster_config(text), text
    except ClusterConfigError as exc:
        raise UserError(f"{path}: {exc}") from None


def config_check(args: argparse.Namespace) -> int:
    cluster = load_config(args.file)
    dc_of = {n.node_id: n.dc for n in cluster.nodes}
    rows: list[dict[str, Any]] = [
        {
            "shard": s.shard_id,
            "range": str(s.span),
            "replicas": [f"n{r} ({dc_of[r]})" for r in s.replicas],
            "leader_dc": s.leader_dc or "",
        }
        for s in cluster.shards
    ]
    if args.output == "json":
        print(json.dumps({"cluster": cluster.name, "shards": rows}))
    else:
        table(
            ["shard", "range", "replicas", "leader_dc"],
            [[r["shard"], r["range"], ", ".join(r["replicas"]), r["leader_dc"]] for r in rows],
        )
    return 0


# ---------------------------------------------------------------------- status


def status(args: argparse.Namespace) -> int:
    views = node_views(args)
    if all(v is None for _, v in views):
        silent = ", ".join(e for e, _ in views)
        raise UserError(f"no node answered: {silent}")
    nodes = [
        {
            "node": v.node_id,
            "dc": v.dc,
            "address": v.address,
            "up": True,
            "shards": len(v.shards),
            "quiet_shards": sum(1 for s in v.shards if s.quiet),
        }
        if v is not None
        else {"node": None, "dc": "", "address": e, "up": False, "shards": 0, "quiet_shards": 0}
        for e, v in views
    ]
    rows = _shard_rows(views)
    rtt = geo_cli.rtt_matrix(views)
    if args.output == "json":
        print(json.dumps({"nodes": nodes, "shards": rows, "rtt": geo_cli.rtt_rows(rtt)}))
        return 0
    table(
        ["node", "dc", "address", "status", "shards (quiet)"],
        [
            [
                n["node"] or "?",
                n["dc"],
                n["address"],
                "up" if n["up"] else "DOWN",
                f"{n['shards']} ({n['quiet_shards']})" if n["up"] else "",
            ]
            for n in nodes
        ],
    )
    print()
    geo_cli.print_rtt_table(rtt)
    print()
    table(
        ["shard", "range", "leader", "ballot", "preferred", "replicas (node:commit/applied)"],
        [
            [
                r["shard"],
                r["range"],
                f"n{r['leader']} ({r['leader_dc']})" if r["leader"] else "none",
                r["ballot"],
                r["preferred_dc"] + ("" if r["conforms"] or not r["leader"] else " (moving)"),
                "  ".join(_replica_cell(x) for x in sorted(r["replicas"], key=lambda x: x["node"])),
            ]
            for r in rows
        ],
    )
    return 0


def _shard_rows(views: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    shards: dict[int, dict[str, Any]] = {}
    for _, view in views:
        if view is None:
            continue
        for s in view.shards:
            entry = shards.setdefault(
                s.shard_id,
                {
                    "shard": s.shard_id,
                    # The meta range holds the range map, not keys.
                    "range": "(meta)"
                    if s.shard_id == META_RANGE_ID
                    else range_text(s.start, s.end),
                    "leader": None,
                    "leader_dc": "",
                    "preferred_dc": s.preferred_dc,
                    "ballot": "",
                    "replicas": [],
                },
            )
            if s.role == "leader":
                entry["leader"], entry["ballot"] = view.node_id, s.promised_ballot
                entry["leader_dc"], entry["preferred_dc"] = view.dc, s.preferred_dc
            entry["replicas"].append(
                {
                    "node": view.node_id,
                    "dc": view.dc,
                    "role": s.role,
                    "commit": s.chosen_through,
                    "applied": s.applied_slot,
                    "lease": s.lease,
                    "quiet": s.quiet,
                    "staleness_bound_ms": s.staleness_bound_ms
                    if s.staleness_bound_ms >= 0
                    else None,
                }
            )
    for entry in shards.values():
        top = max((r["commit"] for r in entry["replicas"]), default=0)
        for r in entry["replicas"]:
            r["lag"] = top - r["applied"]
        entry["conforms"] = entry["leader_dc"] == entry["preferred_dc"]
    return [shards[k] for k in sorted(shards)]


def _replica_cell(replica: dict[str, Any]) -> str:
    lag = f" (lag {replica['lag']})" if replica["lag"] else ""
    return f"n{replica['node']}:{replica['commit']}/{replica['applied']}{lag}"


# ---------------------------------------------------------------------- transfer-leader


def transfer_leader(args: argparse.Namespace) -> int:
    endpoints = endpoint_list(args)
    shard_map = event_loop.run_in_cli_loop(describe_cluster(endpoints, args.timeout))
    shard = next((s for s in shard_map.shards if s.shard_id == args.shard), None)
    if shard is None:
        raise UserError(f"NOT_FOUND: shard {args.shard} does not exist")
    if args.node not in {n.node_id for n in shard_map.nodes}:
        raise UserError(f"NOT_FOUND: node {args.node} does not exist")
    if args.node not in shard.replicas:
        replicas = ", ".join(f"n{r}" for r in shard.replicas)
        raise UserError(f"node {args.node} holds no replica of shard {args.shard} ({replicas})")
    views = node_views(args)
    leader = next(
        (
            v
            for _, v in views
            if v is not None
            for s in v.shards
            if s.shard_id == args.shard and s.role == "leader"
        ),
        None,
    )
    if leader is None:
        raise UserError(f"shard {args.shard}: no leader among the reachable nodes")
    if leader.node_id == args.node:
        print(f"shard {args.shard} is already led by n{args.node}")
        return 0

    async def transfer() -> Any:
        async with grpc.aio.insecure_channel(leader.address, options=CHANNEL_OPTIONS) as channel:
            try:
                return await admin_pb2_grpc.AdminStub(channel).TransferLeader(
                    admin_pb2.TransferLeaderRequest(shard_id=args.shard, to_node_id=args.node),
                    timeout=args.timeout,
                )
            except grpc.aio.AioRpcError as err:
                raise UserError(f"{err.code().name}: {err.details()}") from None

    response = event_loop.run_in_cli_loop(transfer())
    row = {
        "shard": args.shard,
        "from": leader.node_id,
        "to": args.node,
        "started": response.started,
    }
    show(args, row, ["shard", "from", "to", "started"])
    return 0 if response.started else 1


# ---------------------------------------------------------------------- shards


def shards(args: argparse.Namespace) -> int:
    view = event_loop.run_in_cli_loop(describe_cluster(endpoint_list(args), args.timeout))
    dc_of = {n.node_id: n.dc for n in view.nodes}
    # The node that described the cluster knows the leader, keys and load only of the
    # shards it holds: each other shard's come from its replicas' own views.
    held = [v for _, v in node_views(args, [n.address for n in view.nodes]) if v is not None]
    rows = [_shard_row(_with_replica_stats(s, held), dc_of) for s in view.shards]
    if args.output == "json":
        print(json.dumps({"cluster": view.cluster, "shards": rows}))
        return 0
    table(
        ["shard", "range", "gen", "keys", "size", "ops/s", "replicas", "leader"],
        [
            [
                r["shard"],
                r["range"],
                r["generation"],
                r["keys"],
                _size_text(r["size_bytes"]),
                f"{r['ops_per_s']:.0f}",
                ", ".join(f"n{x['node']} ({x['dc']})" for x in r["replicas"]),
                f"n{r['leader']}" if r["leader"] else "unknown",
            ]
            for r in rows
        ],
    )
    return 0


def _with_replica_stats(
    shard: admin_pb2.ShardInfo, views: list[admin_pb2.NodeStatusResponse]
) -> admin_pb2.ShardInfo:
    """``shard`` with its leader, keys, size and load as its replicas report them: the
    leader's own figures, else the most applied replica's (a replica that lags counts
    fewer keys)."""
    rows = [
        r
        for v in views
        for r in v.shards
        if r.shard_id == shard.shard_id and r.generation == shard.generation
    ]
    if not rows:
        return shard
    best = max(rows, key=lambda r: (r.role == "leader", r.applied_slot))
    merged = admin_pb2.ShardInfo()
    merged.CopyFrom(shard)
    merged.keys, merged.size_bytes, merged.ops_per_s = best.keys, best.size_bytes, best.ops_per_s
    if not merged.leader_node_id:
        merged.leader_node_id = best.leader_node_id
    return merged


def _shard_row(s: admin_pb2.ShardInfo, dc_of: dict[int, str]) -> dict[str, Any]:
    """One shard for ``shards``' JSON (``id`` and ``shard`` are the same number: ``shard``
    came first and scripts read it)."""
    return {
        "id": s.shard_id,
        "shard": s.shard_id,
        **bytes_fields("start", s.start),
        **bytes_fields("end", s.end),
        "range": range_text(s.start, s.end),
        "generation": s.generation,
        "replicas": [{"node": r, "dc": dc_of.get(r, "?")} for r in s.replicas],
        "leader": s.leader_node_id or None,
        "size_bytes": s.size_bytes,
        "keys": s.keys,
        "ops_per_s": round(s.ops_per_s, 1),
    }


def _size_text(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


# ---------------------------------------------------------------------- split


def split(args: argparse.Namespace) -> int:
    """Asked of each endpoint in turn until one answers (any node finds the leader)."""
    request = admin_pb2.SplitRangeRequest(
        shard_id=args.shard, at=arg_bytes(args.at) if args.at is not None else b""
    )
    if args.at is not None and not request.at:
        raise UserError("--at must not be empty (leave it out to halve the shard)")
    endpoints = endpoint_list(args)
    response: admin_pb2.SplitRangeResponse = event_loop.run_in_cli_loop(
        ask_any(endpoints, lambda stub: stub.SplitRange(request, timeout=args.timeout))
    )
    left, right = response.left, response.right
    if args.output == "json":
        print(json.dumps({"left": _shard_row(left, {}), "right": _shard_row(right, {})}))
        return 0
    print(
        f"shard {left.shard_id} split at '{text(right.start)}':"
        f" shard {left.shard_id} {range_text(left.start, left.end)},"
        f" shard {right.shard_id} {range_text(right.start, right.end)}"
        f" (generation {right.generation})"
    )
    return 0


# ---------------------------------------------------------------------- merge


def merge(args: argparse.Namespace) -> int:
    """Asked of each endpoint in turn until one answers (any node drives both steps)."""
    request = admin_pb2.MergeRangeRequest(shard_id=args.shard)
    endpoints = endpoint_list(args)
    response: admin_pb2.MergeRangeResponse = event_loop.run_in_cli_loop(
        ask_any(endpoints, lambda stub: stub.MergeRange(request, timeout=args.timeout))
    )
    merged = response.merged
    if args.output == "json":
        print(json.dumps({"merged": _shard_row(merged, {})}))
        return 0
    print(
        f"shard {merged.shard_id} now spans {range_text(merged.start, merged.end)}"
        f" (generation {merged.generation})"
    )
    return 0
