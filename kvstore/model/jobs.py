"""A disk job's state-machine work, as every driver must do it (``kvstore.model.node``'s
contract, items 1 and 3): snapshots installed, then chosen slots applied, then shards dumped,
all inside the caller's open transaction. Pure: the caller passes the engines of that
transaction, and commits it (with the job's Paxos records) afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from cluster.keys import KeySpan
from cluster.ranges import RangeDescriptor
from kvstore.model import SplitDone, snapshot
from kvstore.model.codec import CodecError
from kvstore.model.commands import ApplyResult, OutOfRange, RequestId, decode_command
from kvstore.model.engine import Engine
from kvstore.model.history import Change
from kvstore.model.node import Applied, DiskJob, Dumped
from kvstore.model.ranges import encode_descriptor
from kvstore.model.state_machine import KvStateMachine, SessionTable, mark_merged

# (shard, its changes in order, its span after them (None: every key), its revision then)
Changed: TypeAlias = tuple[int, list[Change], KeySpan | None, int]


def run_job(
    job: DiskJob,
    engine_for: Callable[[int], Engine],
    *,
    sessions: dict[int, SessionTable] | None = None,
    applied_early: Callable[[list[Applied]], None] | None = None,
    machine_class: type[KvStateMachine] = KvStateMachine,
    sizes: dict[int, int] | None = None,
    changes: list[Changed] | None = None,
) -> tuple[list[Applied], list[Dumped]]:
    """``sessions``: each shard's session table as the last transaction left it (kept in
    memory between transactions; updated here). ``applied_early`` hears of the applies
    once they are computed, before the caller commits. ``machine_class``: the simulator's
    planted bugs pass broken state machines. ``sizes``: filled with the bytes of keys and
    values of each shard the job changed, for ``Node.job_done`` (the split policy).
    ``changes``: filled, per apply that changed keys, with the shard, its changes, and its
    span and revision after them (for watchers, once the caller committed)."""
    tables = sessions if sessions is not None else {}
    for hosted in job.hosted:
        engine = engine_for(hosted.range_id)
        if engine.range_get() is None:
            engine.range_put(encode_descriptor(hosted))
    for group, into in job.tombstones:
        mark_merged(engine_for(group), into)
    for group, snap in job.installs:
        assert group not in job.retired, group
        snapshot.restore(
            engine_for(group), snap.data, job.descriptors.get(group), job.keep.get(group, ())
        )
        job.installed_frozen[group] = KvStateMachine(engine_for(group)).frozen_slot
        tables.pop(group, None)  # the snapshot brought its own
    for group, successor in job.bases:
        ended = KvStateMachine(engine_for(group))
        ended.write_successor_base(successor, ended.ended_disks)
    applied: list[Applied] = []
    machines: dict[int, KvStateMachine] = {}
    for group, entry in job.applies:
        merged = job.retired.get(group)
        if merged is not None:
            applied.append((group, entry.slot, (entry.value, _retired(entry.value, merged))))
            continue
        machine = machines.get(group)
        if machine is None:
            machine = machines[group] = machine_class(
                engine_for(group), sessions=tables.get(group), initial=job.descriptors.get(group)
            )
        applied.append((group, entry.slot, (entry.value, machine.apply(entry.slot, entry.value))))
        if changes is not None and machine.changes:
            span = machine.descriptor.span if machine.descriptor is not None else None
            changes.append((group, machine.changes, span, machine.revision))
    if applied and applied_early is not None:
        applied_early(applied)
    for group, machine in machines.items():
        # Kept for the next transaction. If this one fails the node stops, so a table ahead
        # of the disk is never used.
        table = machine.session_table
        if table is not None:
            tables[group] = table
    if sizes is not None:
        _measure(job, applied, machines, engine_for, sizes)
    dumped: list[Dumped] = []
    for group in job.dumps:
        engine = engine_for(group)
        initial = job.descriptors.get(group)
        slot = KvStateMachine(engine, initial=initial).applied_slot
        dumped.append((group, slot, snapshot.dump(engine, initial)))
    return applied, dumped


def _retired(
    value: tuple[bytes, ...], merged: RangeDescriptor
) -> list[tuple[RequestId | None, ApplyResult]]:
    """A merged-away shard's slot: nothing runs, every command is told where its keys are."""
    out: list[tuple[RequestId | None, ApplyResult]] = []
    for raw in value:
        try:
            request: RequestId | None = decode_command(raw).request
        except CodecError:
            request = None
        out.append((request, OutOfRange(merged)))
    return out


def _measure(
    job: DiskJob,
    applied: list[Applied],
    machines: dict[int, KvStateMachine],
    engine_for: Callable[[int], Engine],
    sizes: dict[int, int],
) -> None:
    """The bytes of keys and values of each group the job changed: applied to, installed,
    or born of a split."""
    for group, _ in job.installs:
        sizes[group] = KvStateMachine(
            engine_for(group), initial=job.descriptors.get(group)
        ).size_bytes
    for group, machine in machines.items():
        sizes[group] = machine.size_bytes
    for _, _, (_, results) in applied:
        for _, result in results:
            if isinstance(result, SplitDone):
                sizes[result.right.range_id] = KvStateMachine(
                    engine_for(result.right.range_id)
                ).size_bytes
