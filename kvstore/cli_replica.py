"""``kvstore replica move | add | remove`` and ``kvstore node list | drain | undrain |
replace | remove | rebalance``:
changing which nodes hold a shard (``Admin.ChangeReplicas``, one shard at a time).

A change ends the shard and starts a successor (a new shard id, the same keys, the new
replicas); this waits until the successor has a leader, so the next command finds it
serving. ``node drain`` and ``node replace`` are sequences of such changes, one shard after
another (one move at a time: the rate a rebalance may take from the write load), with a
line of progress each. The meta range's replicas are fixed by the cluster config: a node
holding one keeps it (said, not hidden).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

from cluster import RangeDescriptor
from cluster.replica_placement import Member, NodeState, plan_moves
from kvstore import event_loop
from kvstore.cli_args import UserError
from kvstore.cli_support import (
    ask_any,
    describe_cluster,
    endpoint_list,
    node_views,
    range_text,
    table,
)
from kvstore.v1 import admin_pb2

LEADER_WAIT_S = 30.0  # for a successor's first leader after a change
EVACUATION_PASSES = 5  # of a drain or replace, each over the layout read again
EVACUATION_PAUSE_S = 0.5  # between them
META_SHARD = 0


# ---------------------------------------------------------------------- operator state


def _operator_state(args: argparse.Namespace) -> admin_pb2.GetOperatorStateResponse:
    answer: admin_pb2.GetOperatorStateResponse = event_loop.run_in_cli_loop(
        ask_any(
            endpoint_list(args),
            lambda stub: stub.GetOperatorState(
                admin_pb2.GetOperatorStateRequest(), timeout=max(args.timeout, 10.0)
            ),
        )
    )
    return answer


def _set_draining(args: argparse.Namespace, node: int, draining: bool) -> None:
    request = admin_pb2.SetNodeStateRequest(node_id=node, draining=draining)
    event_loop.run_in_cli_loop(
        ask_any(
            endpoint_list(args),
            lambda stub: stub.SetNodeState(request, timeout=max(args.timeout, 10.0)),
        )
    )


# ---------------------------------------------------------------------- one change


def _change(
    args: argparse.Namespace, shard: int, add: list[int], remove: list[int]
) -> admin_pb2.ChangeReplicasResponse:
    request = admin_pb2.ChangeReplicasRequest(shard_id=shard, add=add, remove=remove)
    response: admin_pb2.ChangeReplicasResponse = event_loop.run_in_cli_loop(
        ask_any(
            endpoint_list(args),
            lambda stub: stub.ChangeReplicas(request, timeout=max(args.timeout, 10.0)),
        )
    )
    _until_led(args, response.successor)
    return response


def _until_led(args: argparse.Namespace, successor: admin_pb2.ShardInfo) -> int:
    """The successor's leader, once one is known (``UserError`` past ``LEADER_WAIT_S``)."""
    shard = successor.shard_id
    deadline = time.monotonic() + LEADER_WAIT_S
    view = event_loop.run_in_cli_loop(describe_cluster(endpoint_list(args), args.timeout))
    address_of = {n.node_id: n.address for n in view.nodes}
    # Each node says the leader of what it hosts: ask the successor's replicas too (the
    # endpoints given may host none of it now: a node a replica moved off).
    asked = [*endpoint_list(args), *(address_of[r] for r in successor.replicas if r in address_of)]
    while True:
        for endpoint in dict.fromkeys(asked):
            try:
                view = event_loop.run_in_cli_loop(describe_cluster([endpoint], args.timeout))
            except UserError:
                continue  # that node is down: another may know
            led = next((s for s in view.shards if s.shard_id == shard and s.leader_node_id), None)
            if led is not None:
                return led.leader_node_id
        if time.monotonic() > deadline:
            raise UserError(f"shard {shard} has no leader after {LEADER_WAIT_S:.0f} s")
        event_loop.run_in_cli_loop(asyncio.sleep(0.2))


def _change_row(response: admin_pb2.ChangeReplicasResponse) -> dict[str, Any]:
    ended, successor = response.ended, response.successor
    return {
        "shard": ended.shard_id,
        "successor": successor.shard_id,
        "range": range_text(successor.start, successor.end),
        "replicas_before": list(ended.replicas),
        "replicas": list(successor.replicas),
        "generation": successor.generation,
    }


def _print_change(args: argparse.Namespace, response: admin_pb2.ChangeReplicasResponse) -> None:
    row = _change_row(response)
    if args.output == "json":
        print(json.dumps(row))
        return
    now = ", ".join(map(str, row["replicas"]))
    before = ", ".join(map(str, row["replicas_before"]))
    print(
        f"shard {row['shard']} {row['range']} is shard {row['successor']} now, on nodes"
        f" {now} (was {before}; generation {row['generation']})"
    )


def replica_move(args: argparse.Namespace) -> int:
    if args.from_node == args.to_node:
        raise UserError("--from and --to name the same node")
    _print_change(args, _change(args, args.shard, [args.to_node], [args.from_node]))
    return 0


def replica_add(args: argparse.Namespace) -> int:
    _print_change(args, _change(args, args.shard, [args.node], []))
    return 0


def replica_remove(args: argparse.Namespace) -> int:
    _print_change(args, _change(args, args.shard, [], [args.node]))
    return 0


# ---------------------------------------------------------------------- nodes


def node_list(args: argparse.Namespace) -> int:
    view = event_loop.run_in_cli_loop(describe_cluster(endpoint_list(args), args.timeout))
    replicas = Counter(r for s in view.shards for r in s.replicas)
    # Every node is asked at its own address (a joined one too), not only the endpoints.
    views = [v for _, v in node_views(args, [n.address for n in view.nodes]) if v is not None]
    answering = {v.node_id for v in views}
    # Each node says what it leads (the meta range, shard 0, is not a shard of the map).
    leaders = Counter(
        v.node_id for v in views for s in v.shards if s.role == "leader" and s.shard_id
    )
    try:
        operator: admin_pb2.GetOperatorStateResponse | None = _operator_state(args)
    except UserError as unread:
        # The listing matters most in an outage: shown without the states, said so.
        print(f"kvstore: node states unknown ({unread})", file=sys.stderr)
        operator = None
    draining = set(operator.draining) if operator is not None else set()

    def state(node: int) -> str:
        if node not in answering:
            return "down"
        return "draining" if node in draining else "up"

    rows = [
        {
            "id": n.node_id,
            "dc": n.dc,
            "address": n.address,
            "state": state(n.node_id),
            "draining": n.node_id in draining if operator is not None else None,
            "replicas": replicas[n.node_id],
            "leaders": leaders[n.node_id],
        }
        for n in sorted(view.nodes, key=lambda n: n.node_id)
    ]
    rebalance = operator.rebalance if operator is not None else None
    if args.output == "json":
        print(json.dumps({"cluster": view.cluster, "nodes": rows, "rebalance": rebalance}))
        return 0
    columns = ["id", "dc", "address", "state", "replicas", "leaders"]
    table(columns, [[r[c] for c in columns] for r in rows])
    shown = {True: "on", False: "off", None: "unknown"}[rebalance]
    print(f"automatic rebalancing: {shown}")
    return 0


def node_drain(args: argparse.Namespace) -> int:
    """Mark ``args.node`` draining (it takes no replica from then on, and the rebalancer
    moves none back), then every replica off it to the node of its datacenter holding
    fewest."""
    return _evacuate(args, args.node, to=None)


def node_undrain(args: argparse.Namespace) -> int:
    """``args.node`` takes replicas again: the rebalancer (or ``node rebalance``) spreads
    them onto it."""
    _set_draining(args, args.node, draining=False)
    if args.output == "json":
        print(json.dumps({"node": args.node, "draining": False}))
    else:
        print(f"node {args.node} takes replicas again")
    return 0


def node_replace(args: argparse.Namespace) -> int:
    """Every replica of ``args.old`` to ``args.new`` (``old`` may be dead)."""
    if args.old == args.new:
        raise UserError("OLD and NEW name the same node")
    return _evacuate(args, args.old, to=args.new)


def node_rebalance(args: argparse.Namespace) -> int:
    """Spread replicas within each datacenter by count (``cluster.replica_placement``),
    one move at a time with a pause between (the rate limit: each move ends a shard's
    configuration and snapshots it to a new node), until the planner has nothing left or
    ``--max-moves`` is reached. Refused while a node is down: its replicas would be counted
    where they may not be served."""
    if args.auto is not None:
        return _set_auto(args, enabled=args.auto == "on")
    moved: list[dict[str, Any]] = []
    while len(moved) < args.max_moves:
        view = event_loop.run_in_cli_loop(describe_cluster(endpoint_list(args), args.timeout))
        addresses = [n.address for n in view.nodes]
        up = {v.node_id for _, v in node_views(args, addresses) if v is not None}
        down = sorted(n.node_id for n in view.nodes if n.node_id not in up)
        if down:
            raise UserError(
                f"node(s) {down} do not answer: replace or remove them before a rebalance"
                f" ({len(moved)} moved so far)"
            )
        draining = set(_operator_state(args).draining)
        members = [
            Member(
                n.node_id, n.dc, NodeState.DRAINING if n.node_id in draining else NodeState.ACTIVE
            )
            for n in view.nodes
        ]
        ranges = [_range_of(s) for s in view.shards if s.shard_id != META_SHARD]
        plan = plan_moves(ranges, members, replicas_per_dc=args.replicas_per_dc)
        if not plan:
            break
        move = plan[0]
        add = [] if move.add is None else [move.add]
        remove = [] if move.remove is None else [move.remove]
        response = _change(args, move.range_id, add, remove)
        moved.append({**_change_row(response), "reason": move.reason})
        if args.output != "json":
            print(
                f"[{len(moved)}] shard {move.range_id}: n{move.remove} -> n{move.add}"
                f" ({move.reason}; now shard {response.successor.shard_id})",
                flush=True,
            )
        event_loop.run_in_cli_loop(asyncio.sleep(args.pause))
    if args.output == "json":
        print(json.dumps({"moved": moved}))
    else:
        done = "balanced" if len(moved) < args.max_moves else "--max-moves reached"
        print(f"{len(moved)} move(s); {done}")
    return 0


def _set_auto(args: argparse.Namespace, *, enabled: bool) -> int:
    request = admin_pb2.SetRebalanceRequest(enabled=enabled)
    event_loop.run_in_cli_loop(
        ask_any(
            endpoint_list(args),
            lambda stub: stub.SetRebalance(request, timeout=max(args.timeout, 10.0)),
        )
    )
    if args.output == "json":
        print(json.dumps({"rebalance": enabled}))
    else:
        print(f"automatic rebalancing is {'on' if enabled else 'off'}")
    return 0


def _range_of(s: admin_pb2.ShardInfo) -> RangeDescriptor:
    return RangeDescriptor(
        s.shard_id, s.start, s.end, tuple(s.replicas), s.generation or 1, s.preferred_dc or None
    )


def node_remove(args: argparse.Namespace) -> int:
    """Take ``args.node`` out of the cluster; with ``--force``, its replicas are rebuilt
    elsewhere in its datacenter first (as ``node drain``), else it must hold none."""
    view = event_loop.run_in_cli_loop(describe_cluster(endpoint_list(args), args.timeout))
    node = args.node
    if node not in {n.node_id for n in view.nodes}:
        raise UserError(f"node {node} does not exist")
    held = [s.shard_id for s in view.shards if node in s.replicas]
    moved: list[dict[str, Any]] = []
    if held and not args.force:
        raise UserError(
            f"node {node} holds {len(held)} replica(s): drain it first (kvstore node drain"
            f" {node}), or --force to rebuild them elsewhere in its datacenter (a dead node)"
        )

    def remove(check_only: bool) -> None:
        request = admin_pb2.RemoveNodeRequest(node_id=node, check_only=check_only)
        event_loop.run_in_cli_loop(
            ask_any(
                endpoint_list(args), lambda stub: stub.RemoveNode(request, timeout=args.timeout)
            )
        )

    if held:
        remove(check_only=True)  # a refusal (a meta replica) before anything moves
        moved, _ = _move_all(args, node, to=None)
    remove(check_only=False)
    if args.output == "json":
        print(json.dumps({"node": node, "removed": True, "moved": moved}))
    else:
        print(f"node {node} removed from the cluster", flush=True)
    return 0


def _evacuate(args: argparse.Namespace, node: int, *, to: int | None) -> int:
    moved, kept = _move_all(args, node, to=to)
    if args.output == "json":
        print(json.dumps({"node": node, "moved": moved, "kept": kept}))
    else:
        print(f"node {node} holds {len(kept)} replica(s) now", end="")
        print(" (the meta range's, fixed by the config)" if kept else "")
    return 0


def _move_all(
    args: argparse.Namespace, node: int, *, to: int | None
) -> tuple[list[dict[str, Any]], list[int]]:
    """Every replica of ``node`` (the meta range's excepted) to ``to``, else to the node of
    its datacenter holding fewest that is not draining: what moved, and the shards kept.

    Every target is found before anything changes; then ``node`` is marked draining (no
    replica is placed on it from then on, by the rebalancer or anyone), and the replicas
    move. The layout is read again after each pass: a shard split or moved meanwhile has
    another id, and is moved in the next pass. If the first move is refused, the mark goes
    again (nothing changed)."""
    view = event_loop.run_in_cli_loop(describe_cluster(endpoint_list(args), args.timeout))
    dc_of = {n.node_id: n.dc for n in view.nodes}
    for named in (node, to):
        if named is not None and named not in dc_of:
            raise UserError(f"node {named} does not exist")
    draining = set(_operator_state(args).draining) - {node}
    if to is not None and to in draining:
        raise UserError(f"node {to} is draining: kvstore node undrain {to} first")
    plan, kept = _plan_evacuation(view, node, to, dc_of, draining)
    _set_draining(args, node, draining=True)
    moved: list[dict[str, Any]] = []
    for _ in range(EVACUATION_PASSES):
        for shard, target in plan:
            try:
                response = _change(args, shard.shard_id, [target], [node])
            except UserError as refused:
                if str(refused).startswith("NOT_FOUND: no shard"):
                    continue  # it split, merged or moved meanwhile: the next pass sees it
                if not moved:
                    _set_draining(args, node, draining=False)  # nothing changed
                raise
            moved.append(_change_row(response))
            if args.output != "json":
                print(
                    f"[{len(moved)}] shard {shard.shard_id}: n{node} -> n{target}"
                    f" (now shard {response.successor.shard_id})",
                    flush=True,
                )
        view = event_loop.run_in_cli_loop(describe_cluster(endpoint_list(args), args.timeout))
        plan, kept = _plan_evacuation(view, node, to, dc_of, draining)
        if not plan:
            return moved, kept
        event_loop.run_in_cli_loop(asyncio.sleep(EVACUATION_PAUSE_S))
    raise UserError(
        f"node {node} still holds shards {[s.shard_id for s, _ in plan]} after"
        f" {EVACUATION_PASSES} passes ({len(moved)} moved): run the command again"
    )


def _plan_evacuation(
    view: admin_pb2.DescribeClusterResponse,
    node: int,
    to: int | None,
    dc_of: dict[int, str],
    draining: set[int],
) -> tuple[list[tuple[admin_pb2.ShardInfo, int]], list[int]]:
    """Each shard ``node`` holds (the meta range's excepted, returned apart) with the node
    its replica goes to; ``UserError`` if one has nowhere to go."""
    held = [s for s in view.shards if node in s.replicas]
    kept = [s.shard_id for s in held if s.shard_id == META_SHARD]
    load = Counter(r for s in view.shards for r in s.replicas)
    plan = []
    for shard in (s for s in held if s.shard_id != META_SHARD):
        target = to if to is not None else _target(shard, node, dc_of, load, draining)
        if target is None:
            raise UserError(
                f"no node of {dc_of[node]} can take shard {shard.shard_id}'s replica (every"
                " other one holds it already, or drains)"
            )
        load[target] += 1
        load[node] -= 1
        plan.append((shard, target))
    return plan, kept


def _target(
    shard: admin_pb2.ShardInfo,
    leaving: int,
    dc_of: dict[int, str],
    load: Counter[int],
    draining: set[int],
) -> int | None:
    """The node of ``leaving``'s datacenter without a replica of ``shard``, not draining,
    holding fewest."""
    free = [
        n
        for n, dc in dc_of.items()
        if dc == dc_of[leaving] and n != leaving and n not in shard.replicas and n not in draining
    ]
    return min(free, key=lambda n: (load[n], n)) if free else None
