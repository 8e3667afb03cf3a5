"""The meta leader's side of leases: when each one ends, and what it owes the log. Pure.

Rules:
- Only a leader that read the lease table through the log (``LeaseTable``, proposed once it
  leads a ballot) keeps deadlines; each lease gets a full TTL from the moment the answer was
  applied here (``LeaseClock.led``). A new ballot, even this node's own, starts over: a
  leader between the two may have taken keep-alives this node never saw.
- A lease granted or ended later reaches the deadlines as its result is applied here, in
  log order after the table, so none is missed or counted twice.
- An expired lease is ended through the log (``LeaseRevoke``), proposed again each second
  until its end is applied. An ended lease stays *ending* until the driver has detached its
  keys in every range and the meta range applied ``LeasesEnded``; the leader asks the
  driver each second (``due_to_detach``).
- A keep-alive is answered only by a leader whose read lease holds: no other leader can
  exist then, so no other deadline can be later than the one it sets.
"""

from __future__ import annotations

from dataclasses import dataclass

from kvstore.model.commands import (
    ApplyResult,
    LeaseGranted,
    LeaseRevoked,
    LeasesForgotten,
    LeaseTableRead,
)
from kvstore.model.lease_clock import LeaseClock

DETACH_BATCH_MAX = 256  # leases handed to the driver to detach at once


@dataclass(frozen=True, slots=True)
class LeaseState:
    """A live lease as the leader knows it."""

    lease_id: int
    ttl_ms: int
    remaining_ms: int  # at least this long before it may expire


class LeaseKeeper:
    def __init__(self, clock: LeaseClock, ticks_per_s: int) -> None:
        self._clock = clock
        self._ticks_per_s = ticks_per_s
        self._ballot: object | None = None  # the ballot led; None: not leading
        self._table_asked_at: int | None = None  # tick the table was last asked for
        self._ready = False  # the table of this ballot was applied
        self._ending: dict[int, None] = {}
        self._revoking: dict[int, int] = {}  # lease -> tick its LeaseRevoke was proposed

    @property
    def busy(self) -> bool:
        """Asking for the table, or keeping leases: the meta group must be ticked."""
        return self._ballot is not None and (not self._ready or len(self._clock) > 0)

    @property
    def ready(self) -> bool:
        """Leading, with deadlines for every live lease."""
        return self._ready

    def leading(self, ballot: object | None, now: int) -> bool:
        """Tell the keeper who leads here (``ballot``: this node's, None: another's or
        nobody's). True if the lease table should be asked for through the log now."""
        if ballot != self._ballot:
            self._ballot = ballot
            self._ready = False
            self._table_asked_at = None
            self._clock.stopped_leading()
            self._ending.clear()
            self._revoking.clear()
        if ballot is None or self._ready:
            return False
        asked = self._table_asked_at
        if asked is None or now - asked >= self._ticks_per_s:
            self._table_asked_at = now
            return True
        return False

    def applied(self, result: ApplyResult, now: int) -> None:
        """A meta-range result applied here, in log order."""
        if self._ballot is None:
            return
        clock = self._clock
        if isinstance(result, LeaseTableRead):
            if not self._ready:
                clock.led(dict(result.live), now)
                self._ending = dict.fromkeys(result.ending)
                self._ready = True
            return
        if not self._ready:
            return  # the table, when it comes, holds this
        if isinstance(result, LeaseGranted):
            clock.granted(result.lease_id, result.ttl_ms, now)
        elif isinstance(result, LeaseRevoked):
            clock.revoked(result.lease_id)
            self._revoking.pop(result.lease_id, None)
            if result.existed:
                self._ending[result.lease_id] = None
        elif isinstance(result, LeasesForgotten):
            for lease_id in result.lease_ids:
                self._ending.pop(lease_id, None)

    def to_revoke(self, now: int) -> list[int]:
        """Expired leases whose end should be proposed now."""
        if not self._ready:
            return []
        out = []
        for lease_id in self._clock.expired(now):
            proposed = self._revoking.get(lease_id)
            if proposed is None or now - proposed >= self._ticks_per_s:
                self._revoking[lease_id] = now
                out.append(lease_id)
        return out

    def due_to_detach(self) -> list[int]:
        """Ended leases whose keys the driver should detach everywhere (asked each second)."""
        if not self._ready:
            return []
        return sorted(self._ending)[:DETACH_BATCH_MAX]

    def keep_alive(self, lease_id: int, now: int) -> int | None:
        """The lease's TTL in ms, its deadline moved (None: no such live lease)."""
        if lease_id in self._revoking:
            return None  # expired: its end is on its way
        return self._clock.keep_alive(lease_id, now)

    def state(self, lease_id: int, now: int) -> LeaseState | None:
        if lease_id in self._revoking:
            return None
        ttl = self._clock.ttl_ms(lease_id)
        remaining = self._clock.remaining_ms(lease_id, now)
        if ttl is None or remaining is None:
            return None
        return LeaseState(lease_id, ttl, remaining)

    def live(self) -> list[int]:
        return sorted(lease for lease in self._clock.leases() if lease not in self._revoking)
