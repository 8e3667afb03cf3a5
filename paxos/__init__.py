"""Multi-Paxos for one group, as a deterministic state machine that performs no I/O.

``Replica`` takes inputs (``step(msg)``, ``tick()``, ``propose(cmd)``, ``read(id)``,
``transfer_leadership(to)``, ``compact(slot, snapshot)``, ``write_done(seq)``) and
accumulates effects that the caller drains with ``take_ready()``. It reads no clock, opens no
socket, starts no thread, and draws randomness only from the ``Rng`` it was given, so a whole
cluster can be simulated in one thread from one seed.

The driver contract: what the caller must do
============================================

After any input, call ``take_ready()`` and, for the ``Ready`` it returns:

1. **Persist** every ``ready.writes[i].record`` on one FIFO disk queue, in order. A record is
   durable only once fsync'd (LMDB: ``txn.commit()`` returned on an environment opened with
   ``sync=True``). Records must become durable in the order they were handed out; several
   may share one transaction (group commit), but none may overtake an earlier one.
2. **Send** ``ready.send_now`` whenever you like: those messages depend on no local write.
3. **Send** ``writes[i].then_send`` only after ``writes[i]`` is durable. Promises, Accepted
   replies and Prepares (whose ballot must never be reissued after a crash) travel here.
4. **Report** each durable write with ``write_done(seq)``, in order. The replica's own
   acceptance of its proposals is released by this call, so a leader counts itself only
   after its own fsync, exactly like a follower.
5. **Apply** ``ready.snapshot`` first if present (replace the state machine with it), then
   ``ready.chosen`` in slot order; each value is a batch of client commands (empty = no-op).
   Applying needs no local durability: a chosen value is chosen. Report what you have durably
   applied when you construct a replica after a restart (``applied_through``).
6. **Serve** each ``ready.reads[i]`` once the state machine has applied ``slot``; fail each
   ``ready.failed_reads`` id (leadership was lost; retry elsewhere).
7. **Tick** once per tick of the local clock, and before delivering a message, serving a
   read, or trusting ``lease_valid()`` or ``stale_read_bound()``, deliver every tick that
   elapsed (a paused process catches up first: leases and freshness stamps are in ticks);
   ``tick(n)`` delivers n at once. A ``quiescent`` replica may go unticked: ``resume(n)``
   with the ticks it missed before any other input, or pass them to the time-based views.
8. **Restart** by building a new ``Replica`` from the durable state (``DurableState``; see
   ``MemoryStorage.state()``) and ``applied_through``; in-flight writes that never became
   durable are simply gone, and that is safe. A replica whose durable state was *lost* (a
   wiped or replaced disk) is not a fresh one: build it from ``DurableState(voting=False)``,
   and it rejoins before it votes (``paxos.rejoin``). Only the founding replicas of a new
   group start from an empty state that votes.
9. **Deliver** peer messages with ``step``. Loss, duplication, delay and reordering are all
   tolerated. Messages from non-voters are dropped.

Assumptions: each replica's clock ticks within ``Config.clock_drift_max_permille`` of the
nominal rate (see ``paxos.config`` for the lease inequality). Safety never depends on timing
except the lease; liveness needs a quorum that can talk within the election timeout.
"""

from paxos.config import Config, ConfigError, lease_is_safe
from paxos.ids import Ballot, NodeId, Slot
from paxos.memory import MemoryStorage
from paxos.messages import (
    MESSAGE_TYPES,
    NOOP,
    Accept,
    Accepted,
    CatchUp,
    CatchUpRequest,
    Heartbeat,
    HeartbeatAck,
    InstallSnapshot,
    LogEntry,
    Message,
    Prepare,
    Promise,
    Proposal,
    Reject,
    RejoinInfo,
    RejoinQuery,
    Stamp,
    TimeoutNow,
    Value,
)
from paxos.ports import Logger, NullLogger, RecordingLogger, Rng
from paxos.quorum import chosen_prefix, is_quorum, quorum_floor, quorum_size
from paxos.ready import (
    ChosenEntry,
    DiskWrite,
    DurableRecord,
    DurableState,
    NotLeader,
    Overloaded,
    Proposed,
    ProposeOutcome,
    ReadOutcome,
    ReadQueued,
    ReadState,
    Ready,
    Role,
    RoleChange,
    Snapshot,
    TooLarge,
)
from paxos.replica import Replica

__all__ = [
    "MESSAGE_TYPES",
    "NOOP",
    "Accept",
    "Accepted",
    "Ballot",
    "CatchUp",
    "CatchUpRequest",
    "ChosenEntry",
    "Config",
    "ConfigError",
    "DiskWrite",
    "DurableRecord",
    "DurableState",
    "Heartbeat",
    "HeartbeatAck",
    "InstallSnapshot",
    "LogEntry",
    "Logger",
    "MemoryStorage",
    "Message",
    "NodeId",
    "NotLeader",
    "NullLogger",
    "Overloaded",
    "Prepare",
    "Promise",
    "Proposal",
    "ProposeOutcome",
    "Proposed",
    "ReadOutcome",
    "ReadQueued",
    "ReadState",
    "Ready",
    "RecordingLogger",
    "Reject",
    "RejoinInfo",
    "RejoinQuery",
    "Replica",
    "Rng",
    "Role",
    "RoleChange",
    "Slot",
    "Snapshot",
    "Stamp",
    "TimeoutNow",
    "TooLarge",
    "Value",
    "chosen_prefix",
    "is_quorum",
    "lease_is_safe",
    "quorum_floor",
    "quorum_size",
]
