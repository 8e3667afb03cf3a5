"""The KV state machine of one shard: deterministic, revisioned, exactly-once for sessions.

Rules:
- ``apply(slot, commands)`` runs a chosen slot's commands in order; slots arrive in order,
  each exactly once (``applied_slot`` is stored with the data, in the same transaction).
- Revisions are per shard and strictly increasing: every command that changes data takes
  the next revision (a Txn takes one for all its writes); a Put sets ``mod_revision`` to it,
  ``create_revision`` on creation, and counts ``version`` from 1; a Delete of a missing key
  and a read-only Txn change nothing and take no revision.
- Sessions: for a ``RequestId(client_id, seq)`` with ``client_id != 0`` the result is
  recorded; the same (client, seq) again returns the recorded result without applying
  anything, an older seq gets ``StaleRequest``. The table is replicated state (stored with
  the data, so it survives restarts and leader changes). At most ``sessions_max`` sessions
  are kept; the least recently used (by slot, then client id) is forgotten first.
- A command over ``KEY_BYTES_HARD_MAX`` / ``VALUE_BYTES_HARD_MAX`` is ``Invalid`` on every
  replica and changes nothing; storage holds everything within them, so no command a client
  can send makes apply raise.
- A Txn compare on a missing key sees version, create_revision and mod_revision 0 and no
  value (every VALUE compare on it is false). Ops run in order and see earlier ops' effects.
- The shard holds the keys of its descriptor's span (replicated state: written by the
  command that changes it, carried by snapshots; a shard without one holds every key). A
  command with a key outside it is ``OutOfRange`` on every replica and changes nothing, not
  even the session: a split may have moved the key after the command was proposed, and
  the caller retries it, with the same request id, at the shard that holds the key now.
- History (``kvstore.model.history``): every change is also kept as a version of its key;
  reads at a revision are answered from it, from the compacted revision (replicated:
  ``Compact``, outside the session table) to the current one. A shard's history begins at
  its first applied slot. The changes of the last ``apply`` are in ``changes`` (watchers).
- ``Split(at, new)`` gives the keys from ``at`` on to a new shard at this slot: the new
  shard starts with this shard's revision, sessions (so a retry there is exactly-once too)
  and placement, at applied slot 0; data is stored by key, so none moves. The shard's size
  (keys, bytes of keys and values) is kept with it; a split counts the new shard's part.
- A merge is two commands in two logs. ``Freeze`` at slot F of the right shard makes it
  final: from F on every command there is ``OutOfRange`` (nothing changes; callers retry
  where the keys go next). ``Merge(right, F)`` in the left neighbour's log takes right's
  span, size, sessions (per client the newer) and revision (the higher): applied only where
  this node's replica of right has applied F (the node holds the slot back until then), so
  every replica reads the same final state; right's records stay where they are. A merge of
  a shard that is not right's left neighbour, or of a right not frozen at F, is ``Invalid``.
- ``Reconfigure(successor, replicas)`` at slot S ends the shard's configuration (a stop
  sign): from S on every command is ``OutOfRange`` toward the successor, which starts from
  this shard's state at S (all its keys, revision, sessions, placement) under the new
  replicas, generation + 1, its own log based at slot 1 as a split's new shard's is. A
  frozen shard is not reconfigured, and an ended one neither frozen nor merged.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace

from cluster import counter_keys
from cluster.keys import END_OF_KEYSPACE, KeySpan
from cluster.range_map import RangeMap
from cluster.ranges import RangeDescriptor
from cluster.stream_keys import record_key, row_of, split_safe
from kvstore.model import history, leases, streams
from kvstore.model.codec import CodecError, Reader, Writer
from kvstore.model.commands import (
    TRIM_ALL,
    AddNode,
    AllocateRangeId,
    Append,
    Appended,
    ApplyResult,
    CachedResult,
    Command,
    Compact,
    Compare,
    CompareOp,
    CounterSpent,
    Delete,
    DeleteResult,
    DetachLease,
    Freeze,
    Frozen,
    GetResult,
    HistoryCompacted,
    Invalid,
    KeyValue,
    LeaseDetached,
    LeaseGone,
    LeaseGrant,
    LeaseGranted,
    LeaseRevoke,
    LeaseRevoked,
    LeasesEnded,
    LeasesForgotten,
    LeaseTable,
    LeaseTableRead,
    Malformed,
    Merge,
    MergeDone,
    NodeAdded,
    NodeRemoved,
    OpKind,
    OutOfRange,
    PlacementSet,
    Put,
    PutResult,
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
    StaleRequest,
    Take,
    Taken,
    Target,
    Trim,
    Trimmed,
    Txn,
    TxnResult,
    decode_command,
    decode_result,
    encode_result,
    keys_of,
    leases_named,
    oversized,
)
from kvstore.model.engine import Engine, Record
from kvstore.model.history import Change
from kvstore.model.ranges import (
    Successor,
    decode_descriptor,
    decode_successors,
    encode_descriptor,
    encode_successors,
)

META_REVISION = b"revision"
META_APPLIED_SLOT = b"applied_slot"
SESSION_PREFIX = b"session/"
META_LEADER_DC = b"placement/leader_dc"
META_SUCCESSORS = b"range/successors"
META_KEYS = b"size/keys"
META_BYTES = b"size/bytes"  # keys and values
META_NEXT_RANGE_ID = b"range/next_id"  # only in the meta range
META_NEXT_NODE_ID = b"node/next_id"  # only in the meta range
NODE_PREFIX = b"nodes/"  # only in the meta range: node id -> "dc\naddress" (joined nodes)
DIRECTORY_PREFIX = b"directory/"  # only in the meta range: range id, generation -> descriptor
META_FROZEN_SLOT = b"range/frozen_slot"  # a shard frozen for a merge: the slot of its Freeze
META_MERGED_INTO = b"range/merged_into"  # a frozen shard merged away: the shard that took it
# A shard whose configuration ended (``Reconfigure``): the slot, then the successor's descriptor.
META_ENDED = b"range/ended"
META_ENDED_DISKS = b"range/ended_added"  # ... and its successor's replicas' disks (as below)
# A shard that began as another's successor (``Reconfigure``): that shard. Its replicas tell
# the ones new to it (or behind on the stop) what it is (``kvstore.model.node.Host``).
META_RECONFIGURED_FROM = b"range/reconfigured_from"
# Its replicas then, each with its disk's incarnation (``Reconfigure.disks``; the keys' names
# are of when only the replicas new to it were listed).
META_DISKS = b"range/added"
# ... and the descriptor it began with (what its replicas tell one new to it: ``Host``).
META_BORN_AS = b"range/born_as"
# Reads at a revision below this are refused (its history may be gone). Written at the
# shard's first apply (its revision then: history begins there) and by ``Compact``.
META_COMPACTED = b"history/compacted"
# The pass that removes versions no read needs: where the next ``Compact`` goes on from
# (absent: no pass under way), the compacted revision the pass started at, and the one the
# last finished pass started at (nothing older than that is left to remove).
META_COLLECT_FROM = b"history/collect_from"
META_COLLECTING = b"history/collecting"
META_COLLECTED = b"history/collected"
COLLECT_KEYS_MAX = 256  # keys whose versions one ``Compact`` looks through
_SCAN_PAGE_KEYS = 256
# A shard split off another starts applied through slot 1: its own log's slot 1 stands for
# the state it was born with (``paxos.Config.base_slot``).
CHILD_BASE_SLOT = 1


SessionTable = OrderedDict[int, tuple[int, int]]  # client_id -> (seq, last_slot), LRU first


class KvStateMachine:
    def __init__(
        self,
        engine: Engine,
        *,
        sessions_max: int = 10_000,
        sessions: SessionTable | None = None,
        initial: RangeDescriptor | None = None,
    ) -> None:
        """``sessions``: the table a previous machine over the same engine state left in
        ``session_table`` (the runtime keeps it between transactions, so a write does not
        re-read every session from disk); None loads it on the first write. ``initial``:
        the shard's descriptor until its state records one (a shard of the configured
        first layout)."""
        assert sessions_max > 0
        self._engine = engine
        self._sessions_max = sessions_max
        self.revision = _u64(engine.meta_get(META_REVISION))
        self.applied_slot = _u64(engine.meta_get(META_APPLIED_SLOT))
        self._session_table: SessionTable | None = sessions
        raw = engine.range_get()
        self.descriptor = decode_descriptor(raw) if raw is not None else initial
        # The size counters are read when first used: a read (a machine per Get) never does.
        self._keys: int | None = None
        self._bytes: int | None = None
        # The slot that froze this shard for a merge (0: not frozen).
        self.frozen_slot = _u64(engine.meta_get(META_FROZEN_SLOT))
        # The slot that ended this shard's configuration (0: not ended).
        ended = engine.meta_get(META_ENDED)
        self.ended_slot = _u64(ended[:8]) if ended is not None else 0
        # What the last ``apply`` changed, in order (for watchers).
        self.changes: list[Change] = []

    @property
    def compacted_revision(self) -> int:
        """Reads at a revision below this are refused: its history may be gone."""
        raw = self._engine.meta_get(META_COMPACTED)
        return _u64(raw) if raw is not None else self.revision

    @property
    def keys(self) -> int:
        if self._keys is None:
            self._keys = _u64(self._engine.meta_get(META_KEYS))
        return self._keys

    @keys.setter
    def keys(self, value: int) -> None:
        self._keys = value

    @property
    def size_bytes(self) -> int:
        """Bytes of keys and values."""
        if self._bytes is None:
            self._bytes = _u64(self._engine.meta_get(META_BYTES))
        return self._bytes

    @size_bytes.setter
    def size_bytes(self, value: int) -> None:
        self._bytes = value

    @property
    def reconfigured_from(self) -> int:
        """The shard this one succeeded (0: it began otherwise; ``Reconfigure``)."""
        return _u64(self._engine.meta_get(META_RECONFIGURED_FROM))

    @property
    def disk_incarnations(self) -> dict[int, int]:
        """This shard's replicas when it began as a successor, each with its disk's
        incarnation then (``Reconfigure.disks``; empty: none, or it began otherwise)."""
        return decode_pairs(self._engine.meta_get(META_DISKS))

    @property
    def born_as(self) -> RangeDescriptor | None:
        """The descriptor this shard began with as a successor (None: it began otherwise)."""
        raw = self._engine.meta_get(META_BORN_AS)
        return decode_descriptor(raw) if raw else None

    @property
    def ended_into(self) -> int:
        """Reconfigured into this shard (0: not; ``Reconfigure``)."""
        successor = self.successor
        return successor.range_id if successor is not None else 0

    @property
    def successor(self) -> RangeDescriptor | None:
        """The next configuration of this ended shard's span (None: not ended)."""
        raw = self._engine.meta_get(META_ENDED)
        return decode_descriptor(raw[8:]) if raw is not None else None

    @property
    def merged_into(self) -> int:
        """Merged away into this shard (0: not): a tombstone on this node, for good."""
        return _u64(self._engine.meta_get(META_MERGED_INTO))

    @property
    def session_table(self) -> SessionTable | None:
        """The session table as of now, if this machine loaded (or was given) it."""
        return self._session_table

    @property
    def _sessions(self) -> SessionTable:
        """client_id -> (seq, last_slot), least recently used first; loaded on first write,
        so reads (which build a state machine per call) never scan the session table."""
        if self._session_table is None:
            sessions = []
            for name, raw in self._engine.meta_scan(SESSION_PREFIX):
                client_id = int.from_bytes(name[len(SESSION_PREFIX) :], "big")
                seq, last_slot, _ = _decode_session(raw)
                sessions.append((last_slot, client_id, seq))
            self._session_table = OrderedDict(
                (client_id, (seq, last_slot)) for last_slot, client_id, seq in sorted(sessions)
            )
        return self._session_table

    # ------------------------------------------------------------------ writes (the log)

    def apply(
        self, slot: int, commands: Sequence[bytes]
    ) -> list[tuple[RequestId | None, ApplyResult]]:
        assert slot == self.applied_slot + 1, (slot, self.applied_slot)
        out: list[tuple[RequestId | None, ApplyResult]] = []
        before = (self.revision, self.keys, self.size_bytes)
        self.changes = []
        engine = self._engine
        if engine.meta_get(META_COMPACTED) is None:
            # History begins here (a store from before history kept none).
            engine.meta_put(META_COMPACTED, self.revision.to_bytes(8, "big"))
        for raw in commands:
            try:
                cmd = decode_command(raw)
            except CodecError as exc:
                out.append((None, Malformed(str(exc))))
                continue
            refused = oversized(cmd)
            if refused is not None:
                # Deterministic: every replica refuses it the same way, and nothing changes
                # (not even the session, so a retry is refused alike).
                out.append((cmd.request, Invalid(refused)))
                continue
            descriptor = self.descriptor
            if descriptor is not None and descriptor.is_meta:
                out.append((cmd.request, self._apply_meta(cmd)))
                continue
            if isinstance(cmd, Freeze):
                out.append((cmd.request, self._freeze(slot)))
                continue
            if isinstance(cmd, Reconfigure):
                out.append((cmd.request, self._reconfigure(slot, cmd)))
                continue
            if (self.frozen_slot or self.ended_slot) and descriptor is not None:
                # Final: a write here would be lost to the merge; retried where keys go.
                out.append((cmd.request, OutOfRange(descriptor, self._successors())))
                continue
            if descriptor is not None and not all(descriptor.contains(k) for k in keys_of(cmd)):
                out.append((cmd.request, OutOfRange(descriptor, self._successors())))
                continue
            if isinstance(cmd, SetPlacement):
                # Idempotent, so outside the session table: a retry just sets it again.
                out.append((cmd.request, self._set_placement(cmd.leader_dc)))
                continue
            if isinstance(cmd, Compact):
                out.append((cmd.request, self._compact(cmd.revision)))
                continue
            if isinstance(cmd, Split):
                out.append((cmd.request, self._split(slot, cmd)))
                continue
            if isinstance(cmd, Merge):
                out.append((cmd.request, self._merge(slot, cmd)))
                continue
            if isinstance(
                cmd,
                AllocateRangeId
                | AddNode
                | RemoveNode
                | RecordRanges
                | LeaseGrant
                | LeaseRevoke
                | LeasesEnded
                | LeaseTable,
            ):
                out.append(
                    (
                        cmd.request,
                        Invalid("only the meta range keeps range ids, ranges, nodes and leases"),
                    )
                )
                continue
            if isinstance(cmd, DetachLease):
                # Outside the session table: detaching twice deletes nothing more.
                out.append((cmd.request, self._detach_lease(cmd.lease_id)))
                continue
            if isinstance(cmd, Append) and cmd.records and engine.get(cmd.row) is None:
                # Outside the session table: records for a partition never made (or whose
                # topic was deleted) are refused, and a retry alike.
                out.append((cmd.request, Invalid(f"no partition at {cmd.row!r}")))
                continue
            if isinstance(cmd, Trim):
                # Outside the session table: trimming again deletes nothing more.
                out.append((cmd.request, self._trim(cmd)))
                continue
            dead = next((x for x in leases_named(cmd) if leases.is_dead(engine, x)), None)
            if dead is not None:
                # Outside the session table: a retry finds the lease as dead.
                out.append((cmd.request, LeaseGone(dead)))
                continue
            out.append((cmd.request, self._apply_session(slot, cmd)))
        self.applied_slot = slot
        if self.descriptor is not None and engine.range_get() is None:
            engine.range_put(encode_descriptor(self.descriptor))  # the configured layout's
        engine.meta_put(META_APPLIED_SLOT, slot.to_bytes(8, "big"))
        if self.revision != before[0]:
            engine.meta_put(META_REVISION, self.revision.to_bytes(8, "big"))
        if (self.keys, self.size_bytes) != before[1:]:
            engine.meta_put(META_KEYS, self.keys.to_bytes(8, "big"))
            engine.meta_put(META_BYTES, self.size_bytes.to_bytes(8, "big"))
        return out

    # ------------------------------------------------------------------ structure

    def _split(self, slot: int, cmd: Split) -> SplitDone | Invalid:
        descriptor = self.descriptor
        if descriptor is None or not descriptor.can_split_at(cmd.at):
            return Invalid(f"split point {cmd.at!r} is not inside the shard")
        if not split_safe(cmd.at):
            return Invalid(f"split point {cmd.at!r} is inside a stream's row, which never splits")
        if cmd.new_range_id in (0, descriptor.range_id):
            return Invalid(f"{cmd.new_range_id} cannot name a new shard")
        left, right = descriptor.split(cmd.at, cmd.new_range_id)
        engine = self._engine
        child = engine.sibling(right.range_id)
        # What the new shard starts with: this one's state for its keys, at slot 0.
        keys = size = 0
        for key, record in self._engine.scan(right.start, right.end, 0):
            keys += 1
            size += len(key) + len(record.value)
        for name, value in engine.meta_scan(b""):
            if name in (
                META_KEYS,
                META_BYTES,
                META_APPLIED_SLOT,
                META_SUCCESSORS,
                META_NEXT_RANGE_ID,
                META_RECONFIGURED_FROM,
                META_DISKS,
                META_ENDED_DISKS,
                META_BORN_AS,
            ):
                continue
            child.meta_put(name, value)
        child.meta_put(META_REVISION, self.revision.to_bytes(8, "big"))
        child.meta_put(META_APPLIED_SLOT, CHILD_BASE_SLOT.to_bytes(8, "big"))
        child.meta_put(META_KEYS, keys.to_bytes(8, "big"))
        child.meta_put(META_BYTES, size.to_bytes(8, "big"))
        child.range_put(encode_descriptor(right))
        self.keys -= keys
        self.size_bytes -= size
        self.descriptor = left
        engine.range_put(encode_descriptor(left))
        successors = [s for s in self.successors if not s.descriptor.span.overlaps(right.span)]
        engine.meta_put(META_SUCCESSORS, encode_successors([*successors, Successor(right, slot)]))
        return SplitDone(left, right, slot)

    def _freeze(self, slot: int) -> Frozen | Invalid:
        descriptor = self.descriptor
        if descriptor is None:
            return Invalid("a shard without a descriptor cannot be merged")
        if descriptor.start == b"":
            return Invalid("the first shard has no left neighbour to merge into")
        if self.ended_slot:
            return Invalid(
                f"the shard was reconfigured at slot {self.ended_slot}: merge its successor"
            )
        if not self.frozen_slot:
            self.frozen_slot = slot
            self._engine.meta_put(META_FROZEN_SLOT, slot.to_bytes(8, "big"))
        return Frozen(descriptor, self.frozen_slot)

    def _merge(self, slot: int, cmd: Merge) -> MergeDone | Invalid:
        left, right = self.descriptor, cmd.right
        if left is None or left.end != right.start or right.start == b"":
            return Invalid(f"shard {right.range_id} is not right after this one")
        if right.range_id == left.range_id or set(right.replicas) != set(left.replicas):
            return Invalid(f"shard {right.range_id} is not on this shard's replicas")
        other = self._engine.sibling(right.range_id)
        final = KvStateMachine(other)
        if final.ended_slot:
            return Invalid(f"shard {right.range_id} was reconfigured, not frozen")
        if final.frozen_slot != cmd.frozen_slot or final.descriptor != right:
            return Invalid(f"shard {right.range_id} is not frozen at slot {cmd.frozen_slot}")
        merged = RangeDescriptor(
            left.range_id,
            left.start,
            right.end,
            left.replicas,
            max(left.generation, right.generation) + 1,
            left.leader_dc,
        )
        engine = self._engine
        sessions = self._sessions
        for name, raw in other.meta_scan(SESSION_PREFIX):
            client_id = int.from_bytes(name[len(SESSION_PREFIX) :], "big")
            seq, _, result = _decode_session(raw)
            known = sessions.get(client_id)
            if known is None or known[0] < seq:
                self._remember(RequestId(client_id, seq), slot, result)
        leases.take_over(engine, other)
        mark_merged(other, left.range_id)
        mine, theirs = self.compacted_revision, final.compacted_revision
        engine.meta_put(META_COMPACTED, max(mine, theirs).to_bytes(8, "big"))
        if mine or theirs:
            # Either half's keys may hold versions no read needs: a new pass over them all.
            engine.meta_delete(META_COLLECT_FROM)
            engine.meta_delete(META_COLLECTED)
        self.revision = max(self.revision, final.revision)
        self.keys += final.keys
        self.size_bytes += final.size_bytes
        self.descriptor = merged
        engine.range_put(encode_descriptor(merged))
        # The shards split off right are now split off this one (for a node that learns of
        # them from this shard's snapshot); their slots are of right's log, so such a node
        # has its replica rejoin before it votes (slot 0: ``node.votes_in_new_group``).
        successors = [
            *(s for s in self.successors if s.descriptor.range_id != right.range_id),
            *(Successor(s.descriptor, 0) for s in final.successors),
        ]
        engine.meta_put(META_SUCCESSORS, encode_successors(successors))
        return MergeDone(merged, right, slot)

    def _reconfigure(self, slot: int, cmd: Reconfigure) -> Reconfigured | Invalid:
        descriptor = self.descriptor
        if descriptor is None:
            return Invalid("a shard without a descriptor cannot be reconfigured")
        if self.ended_slot:
            return self._ended(descriptor)  # a retry, or a change that lost the race
        if self.frozen_slot:
            return Invalid("the shard is frozen for a merge")
        replicas = tuple(sorted(cmd.replicas))
        if not replicas or len(set(replicas)) != len(replicas) or 0 in replicas:
            return Invalid("a configuration needs one or more distinct replicas")
        if replicas == tuple(sorted(descriptor.replicas)):
            return Invalid("those are the shard's replicas already")
        kept = len(set(replicas) & set(descriptor.replicas))
        if kept < len(replicas) // 2 + 1:
            # The successor's first state is this one at the stop, which only replicas of
            # both configurations make: a majority of the new one must, or one lost disk
            # could leave no new replica holding it.
            return Invalid(
                f"{kept} of {len(replicas)} new replicas hold the shard already, not a"
                " majority: change fewer at once"
            )
        if cmd.successor_id in (0, descriptor.range_id):
            return Invalid(f"{cmd.successor_id} cannot name a new shard")
        successor = RangeDescriptor(
            cmd.successor_id,
            descriptor.start,
            descriptor.end,
            replicas,
            descriptor.generation + 1,
            descriptor.leader_dc,
        )
        disks = tuple((node, incarnation) for node, incarnation in cmd.disks if node in replicas)
        self.write_successor_base(successor, disks)
        engine = self._engine
        young = self.successors
        self.ended_slot = slot
        engine.meta_put(META_ENDED, slot.to_bytes(8, "big") + encode_descriptor(successor))
        engine.meta_put(META_ENDED_DISKS, encode_pairs(disks))
        engine.meta_put(META_SUCCESSORS, encode_successors([*young, Successor(successor, slot)]))
        return Reconfigured(descriptor, successor, slot, disks)

    def write_successor_base(
        self, successor: RangeDescriptor, disks: tuple[tuple[int, int], ...] = ()
    ) -> None:
        """Write ``successor``'s first state, this shard's as it is now (at its stop, or a
        snapshot of after it: an ended shard changes nothing): every key (stored by key, so
        none moves), sessions, placement, history's bounds, leases; its own log based at
        slot 1. ``disks``: its replicas' disks (``Reconfigure``)."""
        descriptor = self.descriptor
        assert descriptor is not None
        engine = self._engine
        child = engine.sibling(successor.range_id)
        for name, value in engine.meta_scan(b""):
            if name in (
                META_APPLIED_SLOT,
                META_SUCCESSORS,
                META_NEXT_RANGE_ID,
                META_FROZEN_SLOT,
                META_MERGED_INTO,
                META_ENDED,
                META_ENDED_DISKS,
                META_DISKS,
                META_BORN_AS,
            ):
                continue
            child.meta_put(name, value)
        child.meta_put(META_RECONFIGURED_FROM, descriptor.range_id.to_bytes(8, "big"))
        child.meta_put(META_DISKS, encode_pairs(disks))
        child.meta_put(META_BORN_AS, encode_descriptor(successor))
        child.meta_put(META_REVISION, self.revision.to_bytes(8, "big"))
        child.meta_put(META_KEYS, self.keys.to_bytes(8, "big"))
        child.meta_put(META_BYTES, self.size_bytes.to_bytes(8, "big"))
        child.meta_put(META_APPLIED_SLOT, CHILD_BASE_SLOT.to_bytes(8, "big"))
        child.range_put(encode_descriptor(successor))
        young = [s for s in self.successors if s.descriptor.range_id != successor.range_id]
        if young:
            # Shards split off this one and not yet caught up are the successor's now; their
            # slots are of this log, so a replica that learns of them there rejoins first.
            child.meta_put(
                META_SUCCESSORS, encode_successors([Successor(s.descriptor, 0) for s in young])
            )

    def _ended(self, descriptor: RangeDescriptor) -> Reconfigured:
        raw = self._engine.meta_get(META_ENDED)
        assert raw is not None
        successor = decode_descriptor(raw[8:])
        return Reconfigured(descriptor, successor, self.ended_slot, self.ended_disks)

    @property
    def ended_disks(self) -> tuple[tuple[int, int], ...]:
        """The replicas of the successor of this ended shard, with their disks."""
        return tuple(sorted(decode_pairs(self._engine.meta_get(META_ENDED_DISKS)).items()))

    # ------------------------------------------------------------------ the meta range

    def _apply_meta(self, cmd: Command) -> ApplyResult:
        if isinstance(cmd, RecordRanges):
            return self._record_ranges(cmd.descriptors)
        if isinstance(cmd, AllocateRangeId):
            return self._allocate_range_id(cmd.floor)
        if isinstance(cmd, SetPlacement):
            return self._set_placement(cmd.leader_dc)
        if isinstance(cmd, AddNode):
            return self._add_node(cmd)
        if isinstance(cmd, RemoveNode):
            self._engine.meta_delete(NODE_PREFIX + cmd.node_id.to_bytes(8, "big"))
            return NodeRemoved(cmd.node_id)
        if isinstance(cmd, LeaseGrant):
            refused = leases.grant(self._engine, cmd.lease_id, cmd.ttl_ms)
            return Invalid(refused) if refused else LeaseGranted(cmd.lease_id, cmd.ttl_ms)
        if isinstance(cmd, LeaseRevoke):
            return LeaseRevoked(cmd.lease_id, leases.revoke(self._engine, cmd.lease_id))
        if isinstance(cmd, LeasesEnded):
            leases.forget(self._engine, cmd.lease_ids)
            return LeasesForgotten(cmd.lease_ids)
        if isinstance(cmd, LeaseTable):
            return LeaseTableRead(
                tuple(sorted(leases.live(self._engine).items())),
                tuple(sorted(leases.ending(self._engine))),
            )
        return Invalid("the meta range holds no keys and never splits nor merges")

    def directory(self) -> RangeMap:
        """The meta range's directory: every range's descriptor it was told of."""
        return RangeMap(
            decode_descriptor(raw) for _, raw in self._engine.meta_scan(DIRECTORY_PREFIX)
        )

    def _record_ranges(self, descriptors: Sequence[RangeDescriptor]) -> RangesRecorded | Invalid:
        for d in descriptors:
            if d.is_meta or (d.end != END_OF_KEYSPACE and d.end <= d.start):
                return Invalid(f"shard {d.range_id} has no keys to record")
        directory = self.directory()
        before = directory.known()
        if not directory.update(descriptors):
            return RangesRecorded(changed=False)
        after = directory.known()
        if after == before:
            return RangesRecorded(changed=False)
        engine = self._engine
        for d in set(before) - set(after):
            engine.meta_delete(_directory_key(d))
        for d in set(after) - set(before):
            engine.meta_put(_directory_key(d), encode_descriptor(d))
        return RangesRecorded(changed=True)

    def joined_nodes(self) -> list[tuple[int, str, str]]:
        """The meta range's node table: (id, datacenter, address) of every node that joined
        (the configured nodes are the config's), by id."""
        out = []
        for name, raw in self._engine.meta_scan(NODE_PREFIX):
            dc, _, address = raw.decode().partition("\n")
            out.append((int.from_bytes(name[len(NODE_PREFIX) :], "big"), dc, address))
        return sorted(out)

    def _add_node(self, cmd: AddNode) -> NodeAdded | Invalid:
        for node_id, dc, address in self.joined_nodes():
            if address == cmd.address:
                if dc != cmd.dc:
                    return Invalid(f"{address} is node {node_id}'s, in datacenter {dc}")
                return NodeAdded(node_id, new=False)
        engine = self._engine
        node_id = max(_u64(engine.meta_get(META_NEXT_NODE_ID)), cmd.floor)
        engine.meta_put(META_NEXT_NODE_ID, (node_id + 1).to_bytes(8, "big"))
        engine.meta_put(
            NODE_PREFIX + node_id.to_bytes(8, "big"), f"{cmd.dc}\n{cmd.address}".encode()
        )
        return NodeAdded(node_id, new=True)

    def _allocate_range_id(self, floor: int) -> RangeIdAllocated | Invalid:
        engine = self._engine
        range_id = max(_u64(engine.meta_get(META_NEXT_RANGE_ID)), floor)
        engine.meta_put(META_NEXT_RANGE_ID, (range_id + 1).to_bytes(8, "big"))
        return RangeIdAllocated(range_id)

    def _successors(self) -> tuple[RangeDescriptor, ...]:
        """The shards split off this one, as this one last knew them (where its keys went)."""
        return tuple(s.descriptor for s in self.successors)

    def _set_placement(self, leader_dc: str) -> PlacementSet:
        if leader_dc:
            self._engine.meta_put(META_LEADER_DC, leader_dc.encode())
        else:
            self._engine.meta_delete(META_LEADER_DC)
        return PlacementSet(leader_dc)

    def _compact(self, revision: int) -> HistoryCompacted | Invalid:
        """Raise the compacted revision, and go on with the pass that removes the versions
        no read needs: one pass at a time over the whole span, COLLECT_KEYS_MAX keys per
        command, so a pass finishes however often the revision moves meanwhile."""
        if revision > self.revision:
            return Invalid(f"revision {revision} is ahead of the shard's revision {self.revision}")
        engine = self._engine
        compacted = max(self.compacted_revision, revision)
        engine.meta_put(META_COMPACTED, compacted.to_bytes(8, "big"))
        start = engine.meta_get(META_COLLECT_FROM)
        if start is None:
            if _u64(engine.meta_get(META_COLLECTED)) >= compacted:
                return HistoryCompacted(compacted)
            start = b""  # a new pass, for the versions no read at or after this one needs
            engine.meta_put(META_COLLECTING, compacted.to_bytes(8, "big"))
        lo, hi = self._clip(start, b"")
        after = None
        if not hi or lo < hi:
            after = history.collect(engine, lo, hi, compacted, COLLECT_KEYS_MAX)
        if after is not None:
            engine.meta_put(META_COLLECT_FROM, after)
            return HistoryCompacted(compacted, more=True)
        engine.meta_delete(META_COLLECT_FROM)
        collected = engine.meta_get(META_COLLECTING) or b""
        engine.meta_put(META_COLLECTED, collected)
        return HistoryCompacted(compacted, more=_u64(collected) < compacted)

    @property
    def leader_dc(self) -> str | None:
        """The leader placement set through the log, if any (else the config decides)."""
        raw = self._engine.meta_get(META_LEADER_DC)
        return raw.decode() if raw is not None else None

    def _apply_session(self, slot: int, cmd: Put | Delete | Txn | Append | Take) -> ApplyResult:
        request = cmd.request
        if request.client_id == 0:
            return self._execute(cmd)
        known = self._sessions.get(request.client_id)
        if known is not None:
            latest_seq, _ = known
            if request.seq < latest_seq:
                return StaleRequest(latest_seq)
            if request.seq == latest_seq:
                raw = self._engine.meta_get(_session_key(request.client_id))
                assert raw is not None, request
                _, _, cached = _decode_session(raw)
                self._remember(request, slot, cached)
                return decode_result(cached)
        result = self._execute(cmd)
        if isinstance(result, Invalid | CounterSpent):
            return result  # changed nothing: a retry is refused alike
        self._remember(request, slot, encode_result(result))
        return result

    def _remember(self, request: RequestId, slot: int, result: bytes) -> None:
        sessions = self._sessions
        sessions[request.client_id] = (request.seq, slot)
        sessions.move_to_end(request.client_id)
        self._engine.meta_put(
            _session_key(request.client_id), _encode_session(request.seq, slot, result)
        )
        while len(sessions) > self._sessions_max:
            evicted = _eviction_victim(sessions)
            del sessions[evicted]
            self._engine.meta_delete(_session_key(evicted))

    def _execute(
        self, cmd: Put | Delete | Txn | Append | Take
    ) -> CachedResult | CounterSpent | Invalid:
        match cmd:
            case Append():
                return self._append(cmd)
            case Take():
                return self._take(cmd)
            case Put():
                self.revision += 1
                return self._put(cmd.key, cmd.value, self.revision, cmd.lease)
            case Delete():
                result = self._delete(cmd.key, self.revision + 1)
                if result.prev is not None:
                    self.revision += 1
                return result
            case Txn():
                return self._txn(cmd)

    def _put(self, key: bytes, value: bytes, revision: int, lease: int = 0) -> PutResult:
        prev = self._engine.get(key)
        if prev is not None and prev.lease and prev.lease != lease:
            leases.detach(self._engine, key, prev.lease)
        if lease and (prev is None or prev.lease != lease):
            leases.attach(self._engine, key, lease)
        if prev is None:
            self.keys += 1
            self.size_bytes += len(key) + len(value)
        else:
            self.size_bytes += len(value) - len(prev.value)
        record = Record(
            value=value,
            create_revision=prev.create_revision if prev else revision,
            mod_revision=revision,
            version=prev.version + 1 if prev else 1,
            lease=lease,
        )
        self._engine.put(key, record)  # its version at this revision too
        self._changed(Change(key, revision, record, prev, self._span()))
        return PutResult(revision, _kv(key, prev))

    def _delete(self, key: bytes, revision: int) -> DeleteResult:
        prev = self._engine.get(key)
        if prev is None:
            return DeleteResult(self.revision, None)
        self._engine.delete(key)
        if prev.lease:
            leases.detach(self._engine, key, prev.lease)
        self._engine.history_put(key, revision, None)
        self._changed(Change(key, revision, None, prev, self._span()))
        self.keys -= 1
        self.size_bytes -= len(key) + len(prev.value)
        return DeleteResult(revision, _kv(key, prev))

    def _append(self, cmd: Append) -> Appended:
        """The records at the partition's next offsets and its head moved past them, all
        at one revision. Without records: the partition is made (its head), if it is not
        there yet."""
        raw = self._record_value(cmd.row)
        head = streams.decode_head(raw)
        if not cmd.records:
            if raw is not None:
                return Appended(head.next, 0, self.revision)
            self.revision += 1
            self._put(cmd.row, streams.encode_head(head), self.revision)
            return Appended(0, 0, self.revision)
        revision = self.revision + 1
        size = 0
        for i, record in enumerate(cmd.records):
            value = streams.encode_record(cmd.appended_ms, record)
            self._put(record_key(cmd.row, head.next + i), value, revision)
            size += len(value)
        moved = streams.Head(head.first, head.next + len(cmd.records), head.retained_bytes + size)
        self._put(cmd.row, streams.encode_head(moved), revision)
        self.revision = revision
        return Appended(head.next, len(cmd.records), revision)

    def _take(self, cmd: Take) -> Taken | CounterSpent | Invalid:
        """The counter's next ``count`` ids, and the counter moved past them."""
        start = counter_keys.decode_value(self._record_value(cmd.key))
        if start is None or not cmd.key.startswith(counter_keys.COUNTERS):
            return Invalid(f"{cmd.key!r} does not hold a counter")
        if not 0 < cmd.count <= counter_keys.TAKE_COUNT_MAX:
            return Invalid(f"a take is of 1..{counter_keys.TAKE_COUNT_MAX} ids, not {cmd.count}")
        end = start + cmd.count
        if end > counter_keys.VALUE_MAX:
            return CounterSpent(start)
        self.revision += 1
        self._put(cmd.key, counter_keys.encode_value(end), self.revision)
        return Taken(start, end, self.revision)

    def _trim(self, cmd: Trim) -> Trimmed:
        """The partition's records below ``cmd.before`` deleted at one revision (and, for
        ``TRIM_ALL``, its head)."""
        raw = self._record_value(cmd.row)
        if raw is None:
            return Trimmed(0, 0, self.revision)
        head = streams.decode_head(raw)
        until = min(cmd.before, head.next)
        if until <= head.first and cmd.before != TRIM_ALL:
            return Trimmed(head.first, 0, self.revision)
        revision = self.revision + 1
        gone = self._engine.scan(record_key(cmd.row, head.first), record_key(cmd.row, until), 0)
        for key, _ in gone:
            self._delete(key, revision)
        if cmd.before == TRIM_ALL:
            self._delete(cmd.row, revision)
        else:
            freed = sum(len(record.value) for _, record in gone)
            kept = streams.Head(until, head.next, head.retained_bytes - freed)
            self._put(cmd.row, streams.encode_head(kept), revision)
        self.revision = revision
        return Trimmed(until, len(gone), revision)

    def _record_value(self, key: bytes) -> bytes | None:
        record = self._engine.get(key)
        return record.value if record is not None else None

    def _detach_lease(self, lease_id: int) -> LeaseDetached:
        """The lease ended: delete the keys it holds here at one revision (as a Txn of
        deletes), and refuse it from now on. Done again after a merge, it deletes the keys
        the right range brought (sim seed 178: the left range had detached the lease, the
        right had not, and a shortcut for a lease dead here kept the right's key)."""
        engine = self._engine
        revision = self.revision + 1
        deleted = 0
        for key in leases.attached(engine, lease_id):
            record = engine.get(key)
            if record is not None and record.lease == lease_id and self.owns(key):
                self._delete(key, revision)
                deleted += 1
        leases.ended_here(engine, lease_id)
        if deleted:
            self.revision = revision
        return LeaseDetached(lease_id, deleted, self.revision)

    def _txn(self, txn: Txn) -> TxnResult:
        succeeded = all(self._holds(c) for c in txn.compares)
        revision = self.revision + 1
        changed = False
        results: list[PutResult | DeleteResult | GetResult] = []
        for op in txn.success if succeeded else txn.failure:
            if op.kind is OpKind.GET:
                results.append(GetResult(_kv(op.key, self._engine.get(op.key))))
            elif op.kind is OpKind.PUT:
                results.append(self._put(op.key, op.value, revision, op.lease))
                changed = True
            else:
                deleted = self._delete(op.key, revision)
                changed = changed or deleted.prev is not None
                results.append(deleted)
        if changed:
            self.revision = revision
        return TxnResult(self.revision, succeeded, tuple(results))

    def _holds(self, compare: Compare) -> bool:
        record = self._engine.get(compare.key)
        if compare.target is Target.VALUE:
            if record is None:
                return False
            return _compare(record.value, compare.value, compare.op)
        number = 0
        if record is not None:
            number = {
                Target.VERSION: record.version,
                Target.CREATE_REVISION: record.create_revision,
                Target.MOD_REVISION: record.mod_revision,
            }[compare.target]
        return _compare(number, compare.number, compare.op)

    # ------------------------------------------------------------------ reads

    def owns(self, key: bytes) -> bool:
        """Whether the key is this shard's as of its applied slot (a split or a merge may have
        moved it: then read it from the shard that holds it, at a read point of that shard)."""
        if self.frozen_slot or self.ended_slot:
            return False  # final (about to be merged, or reconfigured): read it where it goes
        return self.descriptor is None or self.descriptor.contains(key)

    @property
    def successors(self) -> tuple[Successor, ...]:
        """The shards split off this one, with the slots that made them."""
        raw = self._engine.meta_get(META_SUCCESSORS)
        return decode_successors(raw) if raw is not None else ()

    def get(self, key: bytes) -> KeyValue | None:
        assert self.owns(key), (key, self.descriptor)
        return _kv(key, self._engine.get(key))

    def get_at(self, key: bytes, revision: int) -> KeyValue | None:
        """``key`` as it was at ``revision`` of this shard (``history.HistoryError`` if the
        shard cannot answer at it)."""
        assert self.owns(key), (key, self.descriptor)
        history.check_readable(revision, self.compacted_revision, self.revision)
        return history.key_at(self._engine, key, revision)

    def scan_at(
        self, start: bytes, end: bytes, revision: int, limit: int, bytes_max: int = 0
    ) -> tuple[list[KeyValue], bool]:
        """``scan`` as of ``revision`` of this shard (``history.HistoryError`` if the shard
        cannot answer at it)."""
        history.check_readable(revision, self.compacted_revision, self.revision)
        start, end = self._clip(start, end)
        if end and start >= end:
            return [], False
        return history.scan_at(self._engine, start, end, revision, limit=limit, bytes_max=bytes_max)

    def _changed(self, change: Change) -> None:
        """Record a change for watchers. A revision is one atomic step: a key a Txn writes
        twice changed once there (to what it left last, from what it was before)."""
        changes = self.changes
        for i in range(len(changes) - 1, -1, -1):
            earlier = changes[i]
            if earlier.revision != change.revision:
                break
            if earlier.key == change.key:
                del changes[i]
                change = replace(change, prev=earlier.prev)
                break
        changes.append(change)

    def _span(self) -> KeySpan | None:
        return self.descriptor.span if self.descriptor is not None else None

    def _clip(self, start: bytes, end: bytes) -> tuple[bytes, bytes]:
        """``[start, end)`` cut to this shard's span."""
        descriptor = self.descriptor
        if descriptor is not None:
            start = max(start, descriptor.start)
            if descriptor.end and (not end or descriptor.end < end):
                end = descriptor.end
        return start, end

    def halving_key(self) -> bytes | None:
        """The first key by which the shard's keys and values reach half their bytes: the
        default split point (None: fewer than two keys, nothing to halve). It is never the
        shard's first key, so both halves keep at least one key, and never inside a stream's
        row (``cluster.stream_keys``): at the row's start instead."""
        if self.keys < 2:
            return None
        half = self.size_bytes // 2
        seen = 0
        later: bytes | None = None  # the latest key after the first
        first = b""  # the first key's row (or the first key)
        start, end = (self.descriptor.start, self.descriptor.end) if self.descriptor else (b"", b"")
        while True:
            rows = self._engine.scan(start, end, _SCAN_PAGE_KEYS)
            for key, record in rows:
                at = row_of(key) or key  # never inside a row: at its start
                if seen and at > first:
                    later = at
                    if seen >= half:
                        return at
                first = first if seen else (row_of(key) or key)
                seen += len(key) + len(record.value)
            if len(rows) < _SCAN_PAGE_KEYS:
                return later  # the last key: the first one holds over half the bytes
            start = rows[-1][0] + b"\x00"

    def scan(
        self, start: bytes, end: bytes, limit: int, bytes_max: int = 0
    ) -> tuple[list[KeyValue], bool]:
        """Keys in ``[start, end)`` in order, at most ``limit`` (0: all) and, with
        ``bytes_max``, at most that many bytes of keys and values (but at least one key),
        and whether more exist. Read from the engine a page at a time, so a scan over large
        values holds no more than its answer."""
        start, end = self._clip(start, end)  # the keys of this shard's span only
        if end and start >= end:
            return [], False
        out: list[KeyValue] = []
        size = 0
        page = _SCAN_PAGE_KEYS
        while True:
            want = page if not limit else min(page, limit - len(out)) + 1
            rows = self._engine.scan(start, end, want)
            for key, r in rows:
                if limit and len(out) >= limit:
                    return out, True
                size += len(key) + len(r.value)
                if bytes_max and out and size > bytes_max:
                    return out, True
                out.append(history.key_value(key, r))
            if len(rows) < want:
                return out, False
            start = rows[-1][0] + b"\x00"  # the next key after the last one read


def _directory_key(d: RangeDescriptor) -> bytes:
    return DIRECTORY_PREFIX + d.range_id.to_bytes(8, "big") + d.generation.to_bytes(8, "big")


def mark_merged(engine: Engine, into: int) -> None:
    """Record, in the merged-away shard's own state, that ``into`` took it over here (by
    the merge, or by a snapshot of ``into`` that already held it)."""
    engine.meta_put(META_MERGED_INTO, into.to_bytes(8, "big"))


def _compare(left: bytes | int, right: bytes | int, op: CompareOp) -> bool:
    if op is CompareOp.EQUAL:
        return left == right
    if op is CompareOp.NOT_EQUAL:
        return left != right
    if op is CompareOp.LESS:
        return left < right  # type: ignore[operator]
    return left > right  # type: ignore[operator]


def _kv(key: bytes, record: Record | None) -> KeyValue | None:
    return None if record is None else history.key_value(key, record)


def _u64(raw: bytes | None) -> int:
    return int.from_bytes(raw, "big") if raw else 0


def _eviction_victim(sessions: SessionTable) -> int:
    """The lowest client id among the sessions last used in the oldest slot.

    The table is ordered by last slot, but within one slot by apply order if it was carried
    in memory and by client id if it was loaded from disk; replicas group slots into
    transactions differently, so only a choice independent of that order keeps their
    tables (and so the fate of a retried request) identical.
    """
    oldest_slot = next(iter(sessions.values()))[1]
    return min(
        client
        for client, _ in itertools.takewhile(
            lambda item: item[1][1] == oldest_slot, sessions.items()
        )
    )


def _session_key(client_id: int) -> bytes:
    return SESSION_PREFIX + client_id.to_bytes(8, "big")


def _encode_session(seq: int, slot: int, result: bytes) -> bytes:
    w = Writer()
    w.u64(seq)
    w.u64(slot)
    w.blob(result)
    return w.framed()


def _decode_session(raw: bytes) -> tuple[int, int, bytes]:
    r = Reader(raw)
    seq, slot, result = r.u64(), r.u64(), r.blob()
    r.done()
    return seq, slot, result


def encode_pairs(pairs: tuple[tuple[int, int], ...]) -> bytes:
    return b"".join(a.to_bytes(8, "big") + b.to_bytes(8, "big") for a, b in pairs)


def decode_pairs(raw: bytes | None) -> dict[int, int]:
    if not raw:
        return {}
    values = [int.from_bytes(raw[i : i + 8], "big") for i in range(0, len(raw), 8)]
    return dict(zip(values[::2], values[1::2], strict=True))
