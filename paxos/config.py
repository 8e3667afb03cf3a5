"""Static parameters of one replica, validated on construction.

Time is measured in ticks: the caller calls ``Replica.tick()`` once per tick of its own local
clock. Nothing here knows how long a tick is in seconds; the shell decides (``tick_ms``).

The lease rule (why ``lease_ticks`` is validated against ``election_ticks_min``):

- A follower that hears the leader refuses to promise any *other* node for
  ``election_ticks_min`` of its own ticks (the "guard"), and a restarted replica does the same
  before promising anyone. Tick #G after a receipt happens no earlier than ``(G - 1)`` tick
  lengths later, because the first tick may fall right after the receipt.
- The leader counts its lease from the tick at which it *sent* the heartbeat a quorum later
  acknowledged, and holds it for ``lease_ticks`` of its own ticks; that ends no later than
  ``lease_ticks`` tick lengths after the send.
- Tick lengths of different replicas may differ by the drift bound: every replica's tick lasts
  between ``(1 - rho)`` and ``(1 + rho)`` nominal ticks, ``rho = clock_drift_max_permille/1000``.

So the lease is safe when ``lease_ticks * (1 + rho) <= (election_ticks_min - 1) * (1 - rho)``:
every follower of the acknowledging quorum still refuses other candidates when the leader's
lease ends, and any new leader needs a promise from one of them. ``Config`` refuses any
setting that breaks this inequality. Clocks that drift faster than the bound (a VM paused
and resumed without its monotonic clock advancing, say) void the guarantee; see
``docs/architecture.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from paxos.ids import NodeId


class ConfigError(ValueError):
    """A configuration that the protocol cannot run safely with."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    node_id: NodeId
    voters: tuple[NodeId, ...]

    heartbeat_ticks: int = 2
    election_ticks_min: int = 10
    election_ticks_max: int = 20
    lease_ticks: int = 7
    clock_drift_max_permille: int = 100  # 10 %: generous on purpose, VMs stutter

    retransmit_ticks: int = 4  # resend unacknowledged accepts / catch-up requests
    transfer_ticks_max: int = 20  # give up a leadership transfer after this long
    # A leader with nothing to do for this many ticks, whose followers have everything
    # chosen, asks them to go quiet (``paxos.replica``: quiescence); 0: never.
    quiesce_ticks: int = 10

    inflight_slots_max: int = 32  # slots sent but not yet chosen (pipelining window)
    batch_commands_max: int = 512  # client commands packed into one slot
    batch_bytes_max: int = 1 << 20
    pending_commands_max: int = 16_384  # proposals waiting for a window slot
    catchup_slots_max: int = 256  # chosen slots per catch-up message
    # Catch-up requests in flight at once: a far-behind replica fetches this many pieces
    # per round trip, not one (sim seed 5165: 2-slot pieces, one per round trip, left a
    # wiped replica 64 slots short after 15 s).
    catchup_requests_max: int = 4
    read_requests_max: int = 4096  # read-index requests waiting for a quorum round
    # The slot the group's state starts from: 0 for a group that starts empty; 1 for one
    # split off another (slot 1 stands for the state it was born with, a snapshot only the
    # replicas that made it hold). A replica that holds nothing through it waits for a
    # snapshot and never campaigns (a leader without the base would fill slot 1).
    base_slot: int = 0

    def __post_init__(self) -> None:
        if len(set(self.voters)) != len(self.voters) or not self.voters:
            raise ConfigError(f"voters must be distinct and non-empty: {self.voters}")
        if self.node_id not in self.voters:
            raise ConfigError(f"node {self.node_id} is not a voter of {self.voters}")
        if any(v <= 0 for v in self.voters):
            raise ConfigError("node ids start at 1 (0 is Ballot.ZERO's)")
        if not 0 <= self.clock_drift_max_permille < 1000:
            raise ConfigError("clock_drift_max_permille must be in [0, 1000)")
        if not 0 < self.heartbeat_ticks < self.election_ticks_min <= self.election_ticks_max:
            raise ConfigError("need 0 < heartbeat_ticks < election_ticks_min <= election_ticks_max")
        if not lease_is_safe(
            self.lease_ticks, self.election_ticks_min, self.clock_drift_max_permille
        ):
            raise ConfigError(
                f"lease_ticks={self.lease_ticks} is unsafe with election_ticks_min="
                f"{self.election_ticks_min} and drift {self.clock_drift_max_permille} permille;"
                f" need lease*(1+rho) <= (election_min-1)*(1-rho)"
            )
        positive = (
            self.retransmit_ticks,
            self.transfer_ticks_max,
            self.inflight_slots_max,
            self.batch_commands_max,
            self.batch_bytes_max,
            self.pending_commands_max,
            self.catchup_slots_max,
            self.catchup_requests_max,
            self.read_requests_max,
        )
        if min(positive) <= 0:
            raise ConfigError("limits must be positive")
        if self.quiesce_ticks < 0:
            raise ConfigError("quiesce_ticks must be >= 0 (0: never quiesce)")
        if self.base_slot not in (0, 1):
            raise ConfigError(f"base_slot must be 0 or 1, not {self.base_slot}")

    @property
    def peers(self) -> tuple[NodeId, ...]:
        return tuple(v for v in self.voters if v != self.node_id)


def lease_is_safe(lease_ticks: int, election_ticks_min: int, drift_permille: int) -> bool:
    """The lease inequality in integer arithmetic (see the module docstring)."""
    return lease_ticks >= 0 and lease_ticks * (1000 + drift_permille) <= (
        election_ticks_min - 1
    ) * (1000 - drift_permille)
