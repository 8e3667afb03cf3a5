"""``kvstore placement set|plan`` and the datacenter view of ``kvstore status``.

Their arguments are defined in ``kvstore.__main__``.

Round trips come from the nodes' own probes (``Admin.NodeStatus`` peers), so a plan reflects
the network as it is now, emulated WAN included.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from typing import Any

from cluster.placement import Rtt, ShardPlan, plan
from kvstore import event_loop
from kvstore.cli_args import UserError
from kvstore.cli_support import ask_any, endpoint_list, node_views, table
from kvstore.v1 import admin_pb2

# ---------------------------------------------------------------------- round trips


def rtt_matrix(views: list[tuple[str, Any]]) -> dict[frozenset[str], float]:
    """Mean measured round trip between each pair of datacenters (both directions)."""
    samples: dict[frozenset[str], list[float]] = defaultdict(list)
    for _, view in views:
        if view is None:
            continue
        for peer in view.peers:
            if peer.connected and peer.rtt_avg_ms > 0 and peer.dc != view.dc:
                samples[frozenset((view.dc, peer.dc))].append(peer.rtt_avg_ms)
    return {pair: sum(ms) / len(ms) for pair, ms in samples.items()}


def rtt_rows(rtt: Rtt) -> list[dict[str, Any]]:
    return [
        {"between": sorted(pair), "rtt_ms": round(ms, 1)}
        for pair, ms in sorted(rtt.items(), key=lambda kv: sorted(kv[0]))
    ]


def print_rtt_table(rtt: Rtt) -> None:
    table(
        ["datacenters", "round trip ms"],
        [[" <-> ".join(r["between"]), f"{r['rtt_ms']:.1f}"] for r in rtt_rows(rtt)]
        or [["(no probe answered yet)", ""]],
    )


# ---------------------------------------------------------------------- placement set


def placement_set(args: argparse.Namespace) -> int:
    leader_dc = "" if args.default else args.leader_dc
    request = admin_pb2.SetPlacementRequest(shard_id=args.shard, leader_dc=leader_dc)

    endpoints = endpoint_list(args)  # outside the loop below: with --dc it runs one itself

    response: admin_pb2.SetPlacementResponse = event_loop.run_in_cli_loop(
        ask_any(endpoints, lambda stub: stub.SetPlacement(request, timeout=args.timeout))
    )
    row = {"shard": args.shard, "preferred_dc": response.preferred_dc}
    if args.output == "json":
        print(json.dumps(row))
    else:
        print(
            f"shard {args.shard}: leader preferred in {response.preferred_dc}; the leader moves"
            " there once that replica is caught up (watch `kvstore status`)"
        )
    return 0


# ---------------------------------------------------------------------- placement plan


def placement_plan(args: argparse.Namespace) -> int:
    views = node_views(args)
    answering = [v for _, v in views if v is not None]
    if not answering:
        raise UserError(f"no node answered: {', '.join(e for e, _ in views)}")
    rtt = rtt_matrix(views)
    dcs = sorted({v.dc for v in answering} | {p.dc for v in answering for p in v.peers})
    shards: dict[int, dict[str, Any]] = {}
    for view in answering:
        for s in view.shards:
            entry = shards.setdefault(
                s.shard_id, {"replica_dcs": set(), "preferred": s.preferred_dc, "leader_dc": ""}
            )
            entry["replica_dcs"].add(view.dc)
            if s.role == "leader":
                entry["leader_dc"] = view.dc
                entry["preferred"] = s.preferred_dc
    plans = [
        (
            plan(shard_id, e["preferred"], sorted(e["replica_dcs"]), dcs, rtt),
            e["leader_dc"],
        )
        for shard_id, e in sorted(shards.items())
    ]
    if args.output == "json":
        print(
            json.dumps({"rtt": rtt_rows(rtt), "shards": [_plan_json(p, now) for p, now in plans]})
        )
        return 0
    print_rtt_table(rtt)
    print()
    print("Expected network time of a write from a client in each DC (through a gateway")
    print("there), for each possible leader DC; a leaseholder read costs the trip to the")
    print("leader only, and a bounded-staleness read none.")
    table(
        ["shard", "leader in", "note", *[f"write from {dc}" for dc in dcs]],
        [
            [
                p.shard_id,
                option.leader_dc,
                _marks(option.leader_dc, p.preferred_dc, now),
                *[_ms(option.write_ms.get(dc)) for dc in dcs],
            ]
            for p, now in plans
            for option in p.options
        ],
    )
    print("note: * the shard's preferred DC; (now) where its leader is now")
    print()
    print("If a datacenter is lost:")
    table(
        ["shard", "lost", "outcome", *[f"write from {dc}" for dc in dcs]],
        [
            [
                p.shard_id,
                loss.lost_dc,
                f"leader in {' or '.join(loss.leader_dcs)}"
                if loss.available
                else "UNAVAILABLE (no majority)",
                *[_ms(loss.write_ms.get(dc)) if dc != loss.lost_dc else "(lost)" for dc in dcs],
            ]
            for p, _ in plans
            for loss in p.losses
        ],
    )
    return 0


def _marks(leader_dc: str, preferred: str, now: str) -> str:
    return ("*" if leader_dc == preferred else "") + (" (now)" if leader_dc == now else "")


def _ms(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f} ms"


def _plan_json(p: ShardPlan, leader_now: str) -> dict[str, Any]:
    return {
        "shard": p.shard_id,
        "preferred_dc": p.preferred_dc,
        "leader_dc": leader_now,
        "options": [
            {
                "leader_dc": o.leader_dc,
                "write_ms": o.write_ms,
                "linearizable_read_ms": o.linearizable_read_ms,
            }
            for o in p.options
        ],
        "if_lost": [
            {
                "dc": loss.lost_dc,
                "available": loss.available,
                "leader_dcs": list(loss.leader_dcs),
                "write_ms": loss.write_ms,
            }
            for loss in p.losses
        ],
    }
