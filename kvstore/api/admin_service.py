"""The ``Admin`` gRPC service: each node reports its own view; the CLI merges the views."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeVar

import grpc
import structlog

from cluster import (
    META_RANGE_ID,
    ClusterConfig,
    NodeSpec,
    RangeDescriptor,
    RangeMap,
    initial_layout,
    meta_descriptor,
)
from cluster.replica_change import ChangeRefusedError, changed_replicas, colocating_step
from kvstore.api.forwarding import NoneAnsweredError, ask_in_turn
from kvstore.api.kv_service import FORWARDED, is_forwarded
from kvstore.api.node_table import (
    JoinRefusedError,
    NodeTable,
    checked_join,
    node_info,
    spec_of,
)
from kvstore.api.operator_states import OperatorStates
from kvstore.api.own_call import OwnCall, RefusedError
from kvstore.api.statuses import shown_status
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.model import (
    AddNode,
    AllocateRangeId,
    ApplyResult,
    Command,
    Freeze,
    Frozen,
    Invalid,
    Merge,
    MergeDone,
    NodeAdded,
    NodeRemoved,
    OutOfRange,
    PlacementSet,
    RangeIdAllocated,
    RangesRecorded,
    Reconfigure,
    Reconfigured,
    RecordRanges,
    RemoveNode,
    RequestId,
    SetPlacement,
    Split,
    SplitDone,
)
from kvstore.model.commands import DetachLease, LeaseDetached, LeasesEnded
from kvstore.operator_state import DRAINING_VALUE, REBALANCE_KEY, REBALANCE_OFF, draining_key
from kvstore.process_stats import cpu_seconds, disk_bytes, rss_bytes
from kvstore.runtime.node import (
    NodeRuntime,
    NotLeaderError,
    OverloadedError,
    ProposalDroppedError,
    ShardStatus,
    UnknownShardError,
)
from kvstore.v1 import admin_pb2, admin_pb2_grpc
from paxos import Role

PROPOSE_DEADLINE_S = 5.0
STATE_READ_S = 3.0  # for the node states a replica change checks
R = TypeVar("R")


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
        *,
        incarnation_of: Callable[[int], int] | None = None,
        nodes: NodeTable | None = None,
        config_text: str = "",
        operator: OperatorStates | None = None,
    ) -> None:
        """``incarnation_of``: a node's data directory's incarnation, a peer's as its
        transport last heard it (0: unknown): what a shard's new configuration lists each
        replica with (``Reconfigure.disks``). ``nodes``:
        the node list's keeper (joins); ``config_text``: the config file this node read,
        what a joining node is given (without it, this node registers no join)."""
        self._incarnation_of = incarnation_of or (lambda _node: 0)
        self._operator = operator  # operator state in the store (None: not served here)
        self._nodes = nodes
        self._config_text = config_text
        self._cluster = cluster
        self._runtime = runtime
        self._data_dir = data_dir
        self._link_stats = link_stats or list
        self._addresses = addresses or {n.node_id: n.address for n in cluster.nodes}
        self._ranges = RangeMap(initial_layout(cluster))
        self._log = structlog.get_logger("kvstore.admin").bind(node=runtime.node_id)
        self._splitting: set[asyncio.Task[None]] = set()
        self._meta = meta_descriptor(cluster)
        # A record of the node's ranges on its way to meta; ended leases being detached.
        self._recording = _OneAtATime(self._splitting)
        self._detaching = _OneAtATime(self._splitting)
        self._layout_seen = -1

    def _layout(self) -> RangeMap:
        """The ranges as this node knows them: the meta range's directory as this node's
        replica of it applied it, its hosted ones (where two overlap the newer wins), and
        what it learned from others; the first layout where nothing newer is known."""
        runtime = self._runtime
        if runtime.layout_version != self._layout_seen:
            self._layout_seen = runtime.layout_version
            self._ranges.update(runtime.directory() or ())
            self._ranges.update(runtime.descriptors())
        return self._ranges

    def _range(self, shard_id: int) -> RangeDescriptor | None:
        d = self._layout().get(shard_id)
        return d if d is not None and d in self._ranges.current() else None

    async def DescribeCluster(  # noqa: N802
        self,
        _request: admin_pb2.DescribeClusterRequest,
        _context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_pb2.DescribeClusterResponse:
        sizes = {s.shard_id: s for s in self._runtime.status()} if self._runtime.started else {}
        return admin_pb2.DescribeClusterResponse(
            cluster=self._cluster.name,
            nodes=[node_info(n) for n in self._listed()],
            removed_nodes=sorted(self._nodes.removed) if self._nodes is not None else [],
            shards=[self._shard_info(d, sizes) for d in self._layout().current()],
            meta_directory=[
                _shard_of(d)
                for d in RangeMap(self._runtime.directory() or ()).current()
                if self._runtime.started
            ],
        )

    def _shard_info(self, d: RangeDescriptor, sizes: dict[int, ShardStatus]) -> admin_pb2.ShardInfo:
        runtime = self._runtime
        hosted = runtime.hosts(d.range_id)
        status = sizes.get(d.range_id)
        return admin_pb2.ShardInfo(
            shard_id=d.range_id,
            start=d.start,
            end=d.end,
            replicas=list(d.replicas),
            leader_node_id=(runtime.leader_hint(d.range_id) or 0) if hosted else 0,
            preferred_dc=runtime.preferred_dc(d.range_id)
            if hosted
            else (d.leader_dc or self._cluster.datacenters[0]),
            generation=d.generation,
            keys=status.keys if status is not None else 0,
            size_bytes=status.size_bytes if status is not None else 0,
            ops_per_s=status.ops_per_s if status is not None else 0.0,
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
                    start=s.descriptor.start,
                    end=s.descriptor.end,
                    generation=s.descriptor.generation,
                    keys=s.keys,
                    size_bytes=s.size_bytes,
                    ops_per_s=s.ops_per_s,
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
                    quiet=s.quiet,
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
        d = self._range(request.shard_id)
        if d is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"shard {request.shard_id} does not exist"
            )
        if request.to_node_id not in {n.node_id for n in self._cluster.nodes}:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"node {request.to_node_id} does not exist"
            )
        replicas = d.replicas
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
            await context.abort(shown_status(exc), str(exc))
        return admin_pb2.TransferLeaderResponse(started=started, leader_node_id=leader)

    async def SetPlacement(  # noqa: N802
        self, request: admin_pb2.SetPlacementRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.SetPlacementResponse:
        """Proposed at the shard's leader (asked of any node: it finds the leader)."""
        spec = self._range(request.shard_id)
        if spec is None:
            await _no_shard(request.shard_id, context)
        dc_of = {n.node_id: n.dc for n in self._cluster.nodes}
        dcs = sorted({dc_of[r] for r in spec.replicas if r in dc_of})
        if request.leader_dc and request.leader_dc not in dcs:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"shard {request.shard_id} has no replica in {request.leader_dc!r};"
                f" its datacenters: {', '.join(dcs)}",
            )
        command = SetPlacement(RequestId(0, 0), request.leader_dc)
        outcome = await self._propose_at_leader(
            spec,
            command,
            lambda stub: stub.SetPlacement(request, timeout=1.0, metadata=(FORWARDED,)),
            context,
            what="the placement",
        )
        if isinstance(outcome, admin_pb2.SetPlacementResponse):
            return outcome
        assert isinstance(outcome, PlacementSet), outcome
        return admin_pb2.SetPlacementResponse(
            preferred_dc=outcome.leader_dc
            or spec.leader_dc
            or self._runtime.preferred_dc(spec.range_id),
            leader_node_id=self._runtime.leader_hint(spec.range_id) or 0,
        )

    async def SplitRange(  # noqa: N802
        self, request: admin_pb2.SplitRangeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.SplitRangeResponse:
        """Proposed at the shard's leader (asked of any node: it finds the leader). The new
        shard's id comes from the range-id counter first, so no two splits share one. A
        shard this node has not heard of (made a moment ago by a split it has not applied
        yet) is asked of the other nodes before it is NOT_FOUND."""
        await _not_meta(request.shard_id, "split", context)
        d = self._range(request.shard_id)
        if d is None and not is_forwarded(context):
            d = await self._learn_range(request.shard_id, context)
        if d is None:
            await _no_shard(request.shard_id, context)
        at = request.at or await self._halving_key(d, context)
        limit = self._cluster.limits.key_bytes_max
        if len(at) > limit:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"split key over {limit} bytes")
        if not d.can_split_at(at):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"split key {at!r} is not inside shard {d.range_id} (after its start"
                f" {d.start!r}{'' if not d.end else f', before its end {d.end!r}'})",
            )
        new_id = request.new_shard_id
        if new_id and not is_forwarded(context):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "new_shard_id is set only by a node forwarding a split; leave it 0",
            )
        if not new_id:
            new_id = await self._allocate_shard_id(context)
        forwarded = admin_pb2.SplitRangeRequest(shard_id=d.range_id, at=at, new_shard_id=new_id)
        outcome = await self._propose_at_leader(
            d,
            Split(RequestId(0, 0), at, new_id),
            lambda stub: stub.SplitRange(forwarded, timeout=5.0, metadata=(FORWARDED,)),
            context,
            what="the split",
        )
        if isinstance(outcome, admin_pb2.SplitRangeResponse):
            # The leader applied it; this node may not have yet. Its caller's next call here
            # (a split of the new shard, say) must find the shard all the same.
            self._ranges.update([_descriptor(outcome.left), _descriptor(outcome.right)])
            return outcome
        if isinstance(outcome, Invalid):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, outcome.reason)
        assert isinstance(outcome, SplitDone), outcome
        await self._record_now([outcome.left, outcome.right])
        await self._until_hosted(outcome.right)
        return admin_pb2.SplitRangeResponse(
            left=self._shard_info(outcome.left, {}), right=self._shard_info(outcome.right, {})
        )

    async def MergeRange(  # noqa: N802
        self, request: admin_pb2.MergeRangeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.MergeRangeResponse:
        """Freeze the range right after ``shard_id`` at its leader, then merge it into its
        left neighbour at that one's leader (each step forwarded to the leader as one Admin
        call with FORWARDED metadata). A right range frozen already (a merge whose caller
        stopped half-way) is merged as it stands."""
        if is_forwarded(context) and request.freeze_shard_id:
            return await self._forwarded_freeze(request.freeze_shard_id, context)
        if is_forwarded(context) and request.HasField("right"):
            return await self._forwarded_merge(request, context)
        await _not_meta(request.shard_id, "merge", context)
        left = self._range(request.shard_id)
        if left is None and not is_forwarded(context):
            left = await self._learn_range(request.shard_id, context)
        if left is None:
            await _no_shard(request.shard_id, context)
        if left.end == b"":
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"shard {left.range_id} is the last: no range after it to merge",
            )
        right = next((d for d in self._layout().current() if d.start == left.end), None)
        if right is None:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"the range after shard {left.range_id} is moving"
            )
        if set(right.replicas) != set(left.replicas):
            runtime = self._runtime
            if not (runtime.hosts(right.range_id) and runtime.frozen_slot(right.range_id)):
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"shards {left.range_id} and {right.range_id} are on different replicas",
                )
            merged = await self._finish_frozen(right.range_id, context)
            return admin_pb2.MergeRangeResponse(merged=self._shard_info(merged, {}))
        frozen, frozen_slot = await self._freeze(right, context)
        merged = await self.finish_merge(frozen, frozen_slot, context)
        return admin_pb2.MergeRangeResponse(merged=self._shard_info(merged, {}))

    async def _colocate(
        self,
        left: RangeDescriptor,
        right: RangeDescriptor,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        """``right`` froze, then ``left`` changed replicas (a move proposed before the
        freeze and chosen after it; sim seed 10291). A frozen range changes none, so the
        merge moves ``left`` onto ``right``'s replicas, one replica a step (one of the
        same datacenter, so placement holds at every step; an addition or a removal alone
        where the two differ in size), as ``ChangeReplicas`` does, onto a draining node too
        (the frozen range cannot leave it before the merge; the drain moves the merged one)."""
        dc_of = {n.node_id: n.dc for n in self._listed()}
        while set(left.replicas) != set(right.replicas):
            add, remove = colocating_step(left.replicas, right.replicas, dc_of)
            self._log.info(
                "merge_colocating", shard=left.range_id, right_shard=right.range_id,
                add=add, remove=remove,
            )  # fmt: skip
            change = admin_pb2.ChangeReplicasRequest(shard_id=left.range_id, add=add, remove=remove)
            done = await self._change_replicas(change, context, onto_draining=True)
            left = _descriptor(done.successor)

    async def _freeze(
        self, right: RangeDescriptor, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[RangeDescriptor, int]:
        forwarded = admin_pb2.MergeRangeRequest(freeze_shard_id=right.range_id)
        outcome = await self._propose_at_leader(
            right,
            Freeze(RequestId(0, 0)),
            lambda stub: stub.MergeRange(forwarded, timeout=5.0, metadata=(FORWARDED,)),
            context,
            what="the freeze",
        )
        if isinstance(outcome, admin_pb2.MergeRangeResponse):
            return _descriptor(outcome.frozen), outcome.frozen_slot
        if isinstance(outcome, Frozen):  # logged by each replica's node as it applies it
            return outcome.descriptor, outcome.slot
        if isinstance(outcome, Invalid):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, outcome.reason)
        return await context.abort(
            grpc.StatusCode.UNAVAILABLE,
            f"shard {right.range_id} changed before it was frozen (a split or merge): retry",
        )

    async def _forwarded_freeze(
        self, shard_id: int, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.MergeRangeResponse:
        if not self._runtime.hosts(shard_id):
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"shard {shard_id} is not here")
        frozen, slot = await self._freeze(self._runtime.descriptor(shard_id), context)
        return admin_pb2.MergeRangeResponse(frozen=_shard_of(frozen), frozen_slot=slot)

    async def _forwarded_merge(
        self, request: admin_pb2.MergeRangeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.MergeRangeResponse:
        if not self._runtime.hosts(request.shard_id):
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"shard {request.shard_id} is not here"
            )
        outcome = await self._runtime.submit(
            request.shard_id,
            Merge(RequestId(0, 0), _descriptor(request.right), request.frozen_slot),
        )
        return _merge_answer(outcome)

    async def finish_merge(
        self,
        frozen: RangeDescriptor,
        frozen_slot: int,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> RangeDescriptor:
        """Merge the frozen range into whichever range ends where it starts (a split of the
        left one meanwhile changes which), until ``PROPOSE_DEADLINE_S`` per attempt."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2 * PROPOSE_DEADLINE_S
        while True:
            left = next((d for d in self._layout().current() if d.end == frozen.start), None)
            if left is None:
                merged = next(
                    (d for d in self._layout().current() if d.contains(frozen.start)), None
                )
                if merged is not None and merged.generation > frozen.generation:
                    return merged  # merged already (by another caller)
            else:
                forwarded = admin_pb2.MergeRangeRequest(
                    shard_id=left.range_id, right=_shard_of(frozen), frozen_slot=frozen_slot
                )
                outcome = await self._propose_at_leader(
                    left,
                    Merge(RequestId(0, 0), frozen, frozen_slot),
                    partial(_forward_merge, forwarded),
                    context,
                    what="the merge",
                )
                merged = None
                if isinstance(outcome, admin_pb2.MergeRangeResponse):
                    merged = _descriptor(outcome.merged) if outcome.HasField("merged") else None
                elif isinstance(outcome, MergeDone):
                    merged = outcome.merged
                if merged is not None:  # logged by each replica's node as it applies it
                    self._ranges.update([merged])
                    await self._record_now([merged])
                    return merged
            if loop.time() > deadline:
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    f"shard {frozen.range_id} is frozen and not merged yet: ask again to finish",
                )
            # The left range changed (a split, or its own merge): learn the layout anew.
            await asyncio.sleep(0.05)
            await self._learn_layout(context)

    async def _learn_layout(self, context: Any) -> None:
        view = await self._ask_others(
            lambda stub: stub.DescribeCluster(admin_pb2.DescribeClusterRequest(), timeout=2.0),
            context,
        )
        if view is not None:
            self._ranges.update(_descriptor(s) for s in view.shards)

    def merge_wanted(self, shard_id: int) -> None:
        """The node wants the range after ``shard_id`` merged into it (``[sharding]``): as
        ``MergeRange``, in a task."""
        self._in_background(
            "merge",
            self.MergeRange,
            admin_pb2.MergeRangeRequest(shard_id=shard_id),
            shard_id,
            lambda done: {"end": done.merged.end},
        )

    def merge_unfinished(self, shard_id: int) -> None:
        """``shard_id``, frozen and led here, was not merged in time (the merge's caller
        stopped half-way, or the left range moved meanwhile): merge it into whatever range
        ends where it starts, moving that one onto its replicas first, in a task."""
        self._in_background(
            "merge_finish",
            self._finish_frozen,
            shard_id,
            shard_id,
            lambda merged: {"merged": merged.range_id, "end": merged.end},
        )

    async def _finish_frozen(self, shard_id: int, context: Any) -> RangeDescriptor:
        """Merge ``shard_id``, frozen here, into whatever range ends where it starts, moving
        that one onto its replicas first (``_colocate``)."""
        frozen_slot = self._runtime.frozen_slot(shard_id) if self._runtime.hosts(shard_id) else 0
        if not frozen_slot:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not frozen here")
        right = self._runtime.descriptor(shard_id)
        # The layout as the cluster knows it: the left range may have moved off this node,
        # which then still takes the ended one for current.
        await self._learn_layout(context)
        left = next((d for d in self._layout().current() if d.end == right.start), None)
        if left is not None and set(left.replicas) != set(right.replicas):
            await self._colocate(left, right, context)
        return await self.finish_merge(right, frozen_slot, context)

    async def split_at(self, shard_id: int, at: bytes) -> bool:
        """Split ``shard_id`` at ``at`` as ``SplitRange`` does, as the node's own wish (a
        new topic's partitions each in a shard): whether it split. A refusal is logged."""
        context: Any = OwnCall()
        try:
            await self.SplitRange(admin_pb2.SplitRangeRequest(shard_id=shard_id, at=at), context)
        except RefusedError as refused:
            self._log.info(
                "split_refused", shard=shard_id, code=refused.code.name, reason=refused.details
            )
            return False
        return True

    def split_wanted(self, shard_id: int) -> None:
        """The node wants ``shard_id`` split (``[sharding]``; this node leads it): split it
        at the key that halves its bytes, as ``SplitRange`` does, in a task of its own."""
        self._in_background(
            "split",
            self.SplitRange,
            admin_pb2.SplitRangeRequest(shard_id=shard_id),
            shard_id,
            lambda done: {"new_shard": done.right.shard_id, "at": done.right.start},
        )

    def _in_background(
        self,
        what: str,
        rpc: Callable[[Any, Any], Awaitable[Any]],
        request: Any,
        shard_id: int,
        facts: Callable[[Any], dict[str, Any]],
    ) -> None:
        """``rpc`` as the node's own wish: called as the RPC is, with a context of its own
        (``_InternalCall``); logged ``auto_<what>``, or ``auto_<what>_refused`` (the node
        asks again after its rest)."""

        async def call() -> None:
            try:
                done = await rpc(request, OwnCall())
            except RefusedError as refused:
                self._log.info(
                    f"auto_{what}_refused", shard=shard_id, code=refused.code.name,
                    reason=refused.details,
                )  # fmt: skip
                return
            self._log.info(f"auto_{what}", shard=shard_id, **facts(done))

        task = asyncio.create_task(call())
        self._splitting.add(task)
        task.add_done_callback(self._splitting.discard)

    def close(self) -> None:
        for task in self._splitting:
            task.cancel()

    # ------------------------------------------------------------------ the meta range

    def ranges_to_record(self, descriptors: list[RangeDescriptor]) -> None:
        """The node wants ``descriptors`` in the meta range's directory (ranges it leads):
        recorded in a task, one at a time (the node asks again each second until told)."""
        self._recording.start(lambda: self._record_now(descriptors))

    async def _record_now(self, descriptors: list[RangeDescriptor]) -> None:
        """Record ``descriptors`` as the node's own wish, best effort: after a split or merge
        this node drove (the directory learns it before the caller is answered), or for a
        range it leads. A failure is repaired by the range's leader, which asks again each
        second until meta has it."""
        try:
            await self._record(descriptors, OwnCall())
        except RefusedError as refused:
            self._log.info("meta_record_refused", code=refused.code.name, reason=refused.details)

    async def _record(self, descriptors: list[RangeDescriptor], context: Any) -> bool:
        """``context``: the RPC's, or ``_InternalCall`` for the node's own wish."""
        forwarded = admin_pb2.RecordRangesRequest(ranges=[_shard_of(d) for d in descriptors])
        outcome = await self._propose_at_leader(
            self._meta,
            RecordRanges(RequestId(0, 0), tuple(descriptors)),
            lambda stub: stub.RecordRanges(forwarded, timeout=2.0, metadata=(FORWARDED,)),
            context,
            what="the ranges to record",
        )
        changed: bool
        if isinstance(outcome, admin_pb2.RecordRangesResponse):
            changed = bool(outcome.changed)
        elif isinstance(outcome, RangesRecorded):
            changed = outcome.changed
        else:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"the meta range refused: {outcome}"
            )
            raise AssertionError("abort raises")
        self._runtime.ranges_recorded(descriptors)
        if changed:
            self._log.info(
                "meta_recorded", shards=[d.range_id for d in descriptors],
                generations=[d.generation for d in descriptors],
            )  # fmt: skip
        return changed

    async def DetachLease(  # noqa: N802
        self, request: admin_pb2.DetachLeaseRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.DetachLeaseResponse:
        """Delete an ended lease's keys in one shard (at its leader). Harmless to repeat,
        and to send for a lease that never had keys there."""
        await _not_meta(request.shard_id, "hold a lease's keys", context)
        d = self._range(request.shard_id)
        if d is None:
            await _no_shard(request.shard_id, context)
        if request.lease_id <= 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a lease id is positive")
        outcome = await self._detach_lease(d, request.lease_id, context)
        if isinstance(outcome, admin_pb2.DetachLeaseResponse):
            return outcome
        if isinstance(outcome, LeaseDetached):
            return admin_pb2.DetachLeaseResponse(deleted=outcome.deleted, revision=outcome.revision)
        return await context.abort(
            grpc.StatusCode.ABORTED, f"shard {d.range_id} changed (a split or merge): retry"
        )

    async def _detach_lease(
        self, d: RangeDescriptor, lease_id: int, context: Any
    ) -> ApplyResult | admin_pb2.DetachLeaseResponse:
        forwarded = admin_pb2.DetachLeaseRequest(shard_id=d.range_id, lease_id=lease_id)
        return await self._propose_at_leader(
            d,
            DetachLease(RequestId(0, 0), lease_id),
            lambda stub: stub.DetachLease(forwarded, timeout=5.0, metadata=(FORWARDED,)),
            context,
            what="the lease's end",
        )

    def leases_to_detach(self, lease_ids: list[int]) -> None:
        """The node (the meta leader) wants ended leases' keys gone: one pass at a time in
        a task (it asks again each second until the meta range forgot them)."""

        async def detach() -> None:
            try:
                await self.detach_leases(lease_ids)
            except RefusedError as refused:
                self._log.info(
                    "lease_detach_refused", code=refused.code.name, reason=refused.details
                )

        self._detaching.start(detach)

    async def detach_leases(self, lease_ids: list[int]) -> bool:
        """Detach the leases' keys in every range, ranges that split or merged meanwhile
        included, then tell the meta range (if this node still leads it) they are gone.
        Whether every range was done."""
        context = OwnCall()
        done: set[tuple[int, int]] = set()  # (range id, generation) detached
        for _ in range(8):  # a split or merge per pass at most, in practice
            pending = [
                d for d in self._layout().current() if (d.range_id, d.generation) not in done
            ]
            if not pending:
                break

            async def one(d: RangeDescriptor) -> bool:
                for lease_id in lease_ids:
                    outcome = await self._detach_lease(d, lease_id, context)
                    if isinstance(outcome, OutOfRange):
                        return False
                return True

            results = await asyncio.gather(*(one(d) for d in pending))
            done.update(
                (d.range_id, d.generation) for d, ok in zip(pending, results, strict=True) if ok
            )
            if not all(results):
                await self._learn_layout(context)
        else:
            return False
        self._log.info("leases_detached", leases=len(lease_ids), ranges=len(done))
        if self._runtime.hosts(META_RANGE_ID):
            # Refused: the meta leader (this node or the next) asks again.
            with contextlib.suppress(NotLeaderError, ProposalDroppedError, OverloadedError):
                await self._runtime.submit(
                    META_RANGE_ID, LeasesEnded(RequestId(0, 0), tuple(lease_ids))
                )
        return True

    async def RecordRanges(  # noqa: N802
        self,
        request: admin_pb2.RecordRangesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_pb2.RecordRangesResponse:
        """Node to node only: what a range's leader tells the meta range."""
        if not is_forwarded(context):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "RecordRanges is sent by nodes (a range's leader), not by clients",
            )
        nodes = {n.node_id for n in self._cluster.nodes}
        descriptors = []
        for s in request.ranges:
            if s.shard_id == META_RANGE_ID or (s.end and s.end <= s.start):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"shard {s.shard_id} holds no keys"
                )
            if not s.replicas or not set(s.replicas) <= nodes or not s.generation:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"shard {s.shard_id}: replicas and generation must name this cluster's",
                )
            descriptors.append(_descriptor(s))
        changed = await self._record(descriptors, context)
        return admin_pb2.RecordRangesResponse(changed=changed)

    async def ChangeReplicas(  # noqa: N802
        self,
        request: admin_pb2.ChangeReplicasRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_pb2.ChangeReplicasResponse:
        """``Reconfigure`` at the shard's leader (asked of any node: it finds the leader).
        The change is checked here first (``cluster.replica_change``); a leader that the
        change removes hands leadership to a replica that stays before it proposes."""
        return await self._change_replicas(request, context)

    async def _change_replicas(
        self,
        request: admin_pb2.ChangeReplicasRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        *,
        onto_draining: bool = False,
    ) -> admin_pb2.ChangeReplicasResponse:
        """``onto_draining``: a merge's move onto a frozen range's replicas, which may be
        on a draining node (a frozen range cannot be moved off it until merged)."""
        if request.shard_id == META_RANGE_ID:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "the meta range's replicas are fixed by the cluster config",
            )
        d = self._range(request.shard_id)
        if d is None and not is_forwarded(context):
            d = await self._learn_range(request.shard_id, context)
        if d is None:
            await _no_shard(request.shard_id, context)
        if is_forwarded(context):
            replicas = tuple(sorted(request.replicas))
            new_id = request.new_shard_id
        else:
            if request.new_shard_id or request.replicas:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "new_shard_id and replicas are set only by a node forwarding a change",
                )
            known = {n.node_id for n in self._cluster.nodes}
            if self._nodes is not None and not set(request.add) <= known:
                await self._nodes.sync_once()  # a node that joined just now: ask peers
            dc_of = replica_dcs(d, self._listed(), self._cluster.nodes)
            try:
                replicas = changed_replicas(
                    d, request.add, request.remove, dc_of, self._cluster.placement.replicas_per_dc
                )
            except ChangeRefusedError as refused:
                code = grpc.StatusCode.NOT_FOUND if refused.unknown else None
                await context.abort(code or grpc.StatusCode.FAILED_PRECONDITION, str(refused))
            if not onto_draining:
                await self._refuse_draining(request.add, context)
            new_id = await self._allocate_shard_id(context)
        await self._hand_over_if_leaving(d, replicas)
        forwarded = admin_pb2.ChangeReplicasRequest(
            shard_id=d.range_id, new_shard_id=new_id, replicas=replicas
        )
        outcome = await self._propose_at_leader(
            d,
            Reconfigure(
                RequestId(0, 0),
                new_id,
                replicas,
                tuple((n, self._incarnation_of(n)) for n in replicas),
            ),
            lambda stub: stub.ChangeReplicas(forwarded, timeout=8.0, metadata=(FORWARDED,)),
            context,
            what="the replica change",
        )
        if isinstance(outcome, admin_pb2.ChangeReplicasResponse):
            self._ranges.update([_descriptor(outcome.successor)])
            return outcome
        if isinstance(outcome, Invalid):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, outcome.reason)
        assert isinstance(outcome, Reconfigured), outcome
        if outcome.successor.range_id != new_id:
            await context.abort(
                grpc.StatusCode.ABORTED,
                f"shard {d.range_id} was changed by another request meanwhile (to shard"
                f" {outcome.successor.range_id}, replicas {list(outcome.successor.replicas)})",
            )
        self._log.info(
            "replicas_changed",
            shard=d.range_id,
            successor=new_id,
            replicas=list(replicas),
            generation=outcome.successor.generation,
        )
        await self._record_now([outcome.successor])
        await self._until_hosted(outcome.successor)
        return admin_pb2.ChangeReplicasResponse(
            ended=self._shard_info(outcome.ended, {}),
            successor=self._shard_info(outcome.successor, {}),
        )

    async def _hand_over_if_leaving(self, d: RangeDescriptor, replicas: Sequence[int]) -> None:
        """This node leads ``d`` and the change removes it: transfer leadership to a replica
        that stays (its preferred datacenter's, if one does) and wait, at most
        ``PROPOSE_DEADLINE_S``, until it leads no more; the proposal then goes to the new
        leader. Best effort: a leader that proposes its own removal is safe too."""
        runtime, me = self._runtime, self._runtime.node_id
        if (
            me in replicas
            or not runtime.hosts(d.range_id)
            or runtime.role(d.range_id) is not Role.LEADER
        ):
            return
        # A listed node first: a replica may still be on a removed node (see replica_dcs).
        dc_of = {n.node_id: n.dc for n in self._listed()}
        staying = sorted((r for r in d.replicas if r in replicas), key=lambda r: r not in dc_of)
        if not staying:
            return
        preferred = runtime.preferred_dc(d.range_id)
        to = next((r for r in staying if dc_of.get(r) == preferred), staying[0])
        self._log.info("leader_handover_before_removal", shard=d.range_id, to_node=to)
        runtime.transfer_leadership(d.range_id, to)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROPOSE_DEADLINE_S
        while runtime.role(d.range_id) is Role.LEADER and loop.time() < deadline:
            await asyncio.sleep(0.01)

    async def JoinCluster(  # noqa: N802
        self,
        request: admin_pb2.JoinClusterRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_pb2.JoinClusterResponse:
        """Register a new node in the meta range (at its leader), tell every node of it, and
        give it its id, the config and the node list."""
        if self._nodes is None or not self._config_text:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "this node was not started from a config file: ask another to join",
            )
        assert self._nodes is not None
        try:
            known = checked_join(self._cluster, request.dc, request.address, self._nodes.removed)
        except JoinRefusedError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if known is not None:
            spec = known
        else:
            floor = max(n.node_id for n in self._cluster.nodes) + 1
            outcome = await self._propose_at_leader(
                self._meta,
                AddNode(RequestId(0, 0), floor, request.dc, request.address),
                lambda stub: stub.JoinCluster(request, timeout=5.0, metadata=(FORWARDED,)),
                context,
                what="the join",
            )
            if isinstance(outcome, admin_pb2.JoinClusterResponse | NodeAdded):
                node_id = outcome.node_id
            else:
                reason = outcome.reason if isinstance(outcome, Invalid) else str(outcome)
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"not joined: {reason}")
            spec = NodeSpec(node_id, request.dc, request.address)
            self._nodes.admit([spec])
            self._log.info("node_joined", joined=node_id, dc=spec.dc, address=spec.address)
        if not is_forwarded(context):
            await self._nodes.tell_everyone([spec])
        return admin_pb2.JoinClusterResponse(
            node_id=spec.node_id,
            config=self._config_text,
            nodes=[node_info(n) for n in self._nodes.listed()],
        )

    # ------------------------------------------------------------------ operator state

    async def SetNodeState(  # noqa: N802
        self, request: admin_pb2.SetNodeStateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.SetNodeStateResponse:
        """Mark a node draining, or not (``kvstore.operator_state``). NOT_FOUND for a node
        that is not in the cluster (removed, or never was)."""
        operator = await self._operator_states(context)
        if self._nodes is not None and request.node_id not in self._listed_ids():
            await self._nodes.sync_once()  # a node that joined just now: ask peers
        if request.node_id not in self._listed_ids():
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no node {request.node_id}")
        value = DRAINING_VALUE if request.draining else None
        await operator.write(draining_key(request.node_id), value, context)
        self._log.info("node_state_set", target=request.node_id, draining=request.draining)
        return admin_pb2.SetNodeStateResponse()

    async def SetRebalance(  # noqa: N802
        self, request: admin_pb2.SetRebalanceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.SetRebalanceResponse:
        operator = await self._operator_states(context)
        await operator.write(REBALANCE_KEY, None if request.enabled else REBALANCE_OFF, context)
        self._log.info("rebalance_set", enabled=request.enabled)
        return admin_pb2.SetRebalanceResponse()

    async def GetOperatorState(  # noqa: N802
        self,
        _request: admin_pb2.GetOperatorStateRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_pb2.GetOperatorStateResponse:
        state = await (await self._operator_states(context)).read(context)
        return admin_pb2.GetOperatorStateResponse(
            draining=sorted(state.draining), rebalance=state.rebalance
        )

    async def ApplyOperatorState(  # noqa: N802
        self,
        request: admin_pb2.ApplyOperatorStateRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_pb2.ApplyOperatorStateResponse:
        return await (await self._operator_states(context)).apply(request, context)

    async def _forget_state_of(self, node_id: int) -> None:
        """A removed node's drain mark goes (its id is never given again). Best effort: the
        removal is done, and a mark left over names a node no list shows."""
        if self._operator is None:
            return
        own: Any = OwnCall()
        try:
            await asyncio.wait_for(
                self._operator.write(draining_key(node_id), None, own), STATE_READ_S
            )
        except (RefusedError, TimeoutError) as unwritten:
            self._log.warning("node_state_left", target=node_id, error=repr(unwritten))

    async def _refuse_draining(
        self, added: Sequence[int], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        """A draining node takes no replica: FAILED_PRECONDITION (read at the change, so a
        rebalancer's plan made before a drain began is refused too). A placement rule, not
        a safety one: if the state cannot be read soon (the last range, which holds it, has
        no leader), the change goes on rather than wait on a range it does not touch."""
        if not added or self._operator is None:
            return
        own: Any = OwnCall()
        try:
            state = await asyncio.wait_for(self._operator.read(own), STATE_READ_S)
        except (RefusedError, TimeoutError) as unread:
            self._log.warning("node_states_unread", error=repr(unread))
            return
        draining = sorted(set(added) & state.draining)
        if draining:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"node {draining[0]} is draining: it takes no replica"
                f" (kvstore node undrain {draining[0]} first)",
            )

    async def _operator_states(self, context: grpc.aio.ServicerContext[Any, Any]) -> OperatorStates:
        if self._operator is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "no operator state on this node")
        assert self._operator is not None
        return self._operator

    def _listed_ids(self) -> set[int]:
        return {n.node_id for n in self._listed()}

    def _listed(self) -> Sequence[NodeSpec]:
        """The cluster's nodes, those removed left out."""
        return self._nodes.listed() if self._nodes is not None else self._cluster.nodes

    async def AdmitNodes(  # noqa: N802
        self,
        request: admin_pb2.AdmitNodesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_pb2.AdmitNodesResponse:
        """Node to node only: nodes that joined (the registering node tells everyone)."""
        if not is_forwarded(context) or self._nodes is None:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "AdmitNodes is sent by nodes (the one that registered a join), not by clients",
            )
        assert self._nodes is not None
        admitted = self._nodes.admit([spec_of(n) for n in request.nodes])
        self._nodes.remove(request.removed)
        return admin_pb2.AdmitNodesResponse(admitted=admitted)

    async def RemoveNode(  # noqa: N802
        self,
        request: admin_pb2.RemoveNodeRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_pb2.RemoveNodeResponse:
        """Take a node that holds no replica out of the cluster: its entry in the meta
        range goes (at its leader), and every node is told."""
        nodes = self._nodes
        if nodes is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "this node keeps no node list")
        assert nodes is not None
        node_id = request.node_id
        if node_id not in self._listed_ids():
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no node {node_id}")
        if node_id in self._meta.replicas:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"node {node_id} holds a replica of the meta range (fixed by the config)",
            )
        if request.check_only:
            return admin_pb2.RemoveNodeResponse()
        held = sorted(d.range_id for d in self._layout().current() if node_id in d.replicas)
        if held:
            await self._learn_layout(context)  # this node's view may lag the moves just made
            held = sorted(d.range_id for d in self._layout().current() if node_id in d.replicas)
        if held:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"node {node_id} holds replicas of shards {held}: drain or replace it first",
            )
        outcome = await self._propose_at_leader(
            self._meta,
            RemoveNode(RequestId(0, 0), node_id),
            lambda stub: stub.RemoveNode(request, timeout=5.0, metadata=(FORWARDED,)),
            context,
            what="the removal",
        )
        if not isinstance(outcome, admin_pb2.RemoveNodeResponse | NodeRemoved):
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"not removed: {outcome}")
        nodes.remove([node_id])
        if not is_forwarded(context):
            await nodes.tell_everyone([], removed=[node_id])
            await self._forget_state_of(node_id)
        return admin_pb2.RemoveNodeResponse()

    async def AllocateShardId(  # noqa: N802
        self,
        _request: admin_pb2.AllocateShardIdRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_pb2.AllocateShardIdResponse:
        return admin_pb2.AllocateShardIdResponse(shard_id=await self._allocate_shard_id(context))

    async def _allocate_shard_id(self, context: grpc.aio.ServicerContext[Any, Any]) -> int:
        """A shard id never handed out before, from the meta range's counter (its leader
        proposes it; asked of any node, it finds that leader)."""
        # Above every id this node knows of too: a directory written before the counter
        # moved to the meta range has split-off ranges the new counter never handed out.
        known = [d.range_id for d in self._layout().known()] + self._runtime.group_ids()
        floor = max(s.shard_id for s in self._cluster.shards) + 1
        floor = max(floor, max(known, default=0) + 1)
        outcome = await self._propose_at_leader(
            self._meta,
            AllocateRangeId(RequestId(0, 0), floor),
            lambda stub: stub.AllocateShardId(
                admin_pb2.AllocateShardIdRequest(), timeout=1.0, metadata=(FORWARDED,)
            ),
            context,
            what="a shard id",
        )
        if isinstance(outcome, admin_pb2.AllocateShardIdResponse):
            return outcome.shard_id
        if not isinstance(outcome, RangeIdAllocated):
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"no shard id: {outcome}")
        return outcome.range_id

    async def _halving_key(
        self, d: RangeDescriptor, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        """The key that halves the shard's bytes, as this node's replica holds them."""
        if not self._runtime.hosts(d.range_id):
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"node {self._runtime.node_id} holds no replica of shard {d.range_id} to find"
                " its middle: give the split key, or ask one of its replicas",
            )
        with self._runtime.read_state_machine(d.range_id) as sm:
            at = sm.halving_key()
        if at is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"shard {d.range_id} has too few keys to halve: give the split key",
            )
        return at

    async def _until_hosted(self, d: RangeDescriptor) -> None:
        """Until this node hosts the range a split made (its proposer is answered as the
        split is applied, a moment before the node creates the group), so that the caller's
        next request here finds it; at most ``PROPOSE_DEADLINE_S``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROPOSE_DEADLINE_S
        if self._runtime.node_id not in d.replicas:
            return
        while not self._runtime.hosts(d.range_id) and loop.time() < deadline:
            await asyncio.sleep(0.005)

    async def _learn_range(
        self, shard_id: int, context: grpc.aio.ServicerContext[Any, Any]
    ) -> RangeDescriptor | None:
        """The descriptor of ``shard_id`` as another node knows it (a split this node has not
        applied yet made it); learned into this node's map. None: no node knows it."""

        def knows(answer: admin_pb2.DescribeClusterResponse) -> bool:
            return any(s.shard_id == shard_id for s in answer.shards)

        view = await self._ask_others(
            lambda stub: stub.DescribeCluster(admin_pb2.DescribeClusterRequest(), timeout=2.0),
            context,
            until=knows,
        )
        if view is None:
            return None
        for s in view.shards:
            if s.shard_id == shard_id:
                d = _descriptor(s)
                self._ranges.update([d])
                return d
        return None

    async def _ask_others(
        self,
        call: Callable[[admin_pb2_grpc.AdminStub], Awaitable[R]],
        context: grpc.aio.ServicerContext[Any, Any],
        until: Callable[[R], bool] = lambda _: True,
    ) -> R | None:
        """``call`` at each other node until an answer passes ``until`` (NOT_FOUND and
        UNAVAILABLE try the next; another refusal is passed on); None if none did."""
        for node, address in self._addresses.items():
            if node == self._runtime.node_id:
                continue
            try:
                async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
                    answer = await call(admin_pb2_grpc.AdminStub(channel))
                    if until(answer):
                        return answer
            except grpc.aio.AioRpcError as err:
                if err.code() not in (
                    grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    await context.abort(err.code(), err.details() or "")
        return None

    async def _propose_at_leader(
        self,
        d: RangeDescriptor,
        command: Command,
        forward: Callable[[admin_pb2_grpc.AdminStub], Awaitable[R]],
        context: grpc.aio.ServicerContext[Any, Any],
        *,
        what: str,
    ) -> ApplyResult | R:
        """``command``'s result at shard ``d``'s leader: proposed here if this node leads,
        else ``forward`` (an Admin call with FORWARDED metadata) to the leader as known, then
        to each replica in turn, until ``PROPOSE_DEADLINE_S``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROPOSE_DEADLINE_S
        candidates = list(d.replicas)
        shard = d.range_id
        while loop.time() < deadline:
            if self._runtime.hosts(shard):
                try:
                    return await self._runtime.submit(shard, command)
                except NotLeaderError as exc:
                    if exc.leader_hint:
                        candidates.insert(0, exc.leader_hint)
                except (ProposalDroppedError, OverloadedError):
                    await asyncio.sleep(0.05)
                    continue
            if is_forwarded(context):
                break  # the asking node tries the next replica
            me = self._runtime.node_id
            with contextlib.suppress(NoneAnsweredError):
                return await ask_in_turn(
                    [n for n in candidates if n != me],
                    self._addresses,
                    admin_pb2_grpc.AdminStub,
                    forward,
                    context,
                )
            await asyncio.sleep(0.1)
        return await context.abort(
            grpc.StatusCode.UNAVAILABLE, f"shard {shard}: no leader took {what}"
        )


def replica_dcs(
    d: RangeDescriptor, listed: Iterable[NodeSpec], known: Iterable[NodeSpec]
) -> dict[int, str]:
    """The datacenter of every listed node and of each replica of ``d``, for checking a
    change of ``d`` (``cluster.replica_change``). A replica may be on a node removed
    meanwhile (a change onto it landed after ``node remove`` found it empty), and taking
    it off is what the rebalancer or an operator does next; one on a node this one never
    knew counts as a datacenter of its own (it crowds none). Only listed nodes can be
    added: a replica of ``d`` already holds it."""
    dc_of = {n.node_id: n.dc for n in listed}
    dc_by_id = {n.node_id: n.dc for n in known}
    for r in d.replicas:
        dc_of.setdefault(r, dc_by_id.get(r, f"(node {r}'s)"))
    return dc_of


async def _no_shard(shard_id: int, context: grpc.aio.ServicerContext[Any, Any]) -> NoReturn:
    """NOT_FOUND to a client. To a node that forwarded the call here (a replica, as it knew
    the range) UNAVAILABLE: this node may not have applied the split that made the shard
    yet, and the asking node tries the next replica (a split of a just-split shard met
    NOT_FOUND so: tests/system/test_splits.py)."""
    if is_forwarded(context):
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"shard {shard_id} is not here yet")
    await context.abort(grpc.StatusCode.NOT_FOUND, f"no shard {shard_id}")


async def _not_meta(shard_id: int, what: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    if shard_id == META_RANGE_ID:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"shard {META_RANGE_ID} is the meta range: it holds no keys, so it cannot {what}",
        )


def _forward_merge(
    request: admin_pb2.MergeRangeRequest, stub: admin_pb2_grpc.AdminStub
) -> Awaitable[admin_pb2.MergeRangeResponse]:
    answer: Awaitable[admin_pb2.MergeRangeResponse] = stub.MergeRange(
        request, timeout=5.0, metadata=(FORWARDED,)
    )
    return answer


def _shard_of(d: RangeDescriptor) -> admin_pb2.ShardInfo:
    return admin_pb2.ShardInfo(
        shard_id=d.range_id,
        start=d.start,
        end=d.end,
        replicas=list(d.replicas),
        generation=d.generation,
        preferred_dc=d.leader_dc or "",
    )


def _descriptor(s: admin_pb2.ShardInfo) -> RangeDescriptor:
    return RangeDescriptor(
        s.shard_id, s.start, s.end, tuple(s.replicas), s.generation, s.preferred_dc or None
    )


def _merge_answer(outcome: ApplyResult) -> admin_pb2.MergeRangeResponse:
    """A forwarded merge's result as an answer: merged, or not (an empty answer)."""
    if isinstance(outcome, MergeDone):
        return admin_pb2.MergeRangeResponse(merged=_shard_of(outcome.merged))
    return admin_pb2.MergeRangeResponse()


class _OneAtATime:
    """A job the node asks for again and again (each second until it is done): run in a
    task of its own, one at a time; an ask while it runs is dropped."""

    def __init__(self, tasks: set[asyncio.Task[None]]) -> None:
        self._tasks = tasks  # kept referenced until done
        self._running = False

    def start(self, job: Callable[[], Awaitable[None]]) -> None:
        if self._running:
            return
        self._running = True

        async def run() -> None:
            try:
                await job()
            finally:
                self._running = False

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
