"""The meta leader's lease deadlines: when a lease expires, by its own clock. Pure.

Rules:
- Deadlines live in the leader's memory, in its ticks; only a lease's end goes through the
  log (``LeaseRevoke``). A keep-alive moves a deadline to a full TTL from its arrival.
- Never early. A tick of the leader's clock may last as little as ``(1 - rho)`` of its
  nominal length (``paxos.Config``: the bound the read lease already rests on), so a TTL
  of ``t`` waits ``ceil(t / ((1 - rho) * tick))`` ticks: at
  least ``t`` of real time. A new leader knows none of its predecessor's deadlines, so it
  gives every lease a full TTL from when it began to lead (``led``): a lease may outlive
  its TTL across a leader change, never fall short of it.
- A lease the leader does not know (granted after a snapshot it has not applied, say) is
  not expired by it: only leases it was told of (``led``, ``granted``) have deadlines.
"""

from __future__ import annotations

import heapq


class LeaseClock:
    def __init__(self, tick_ms: int, drift_permille: int) -> None:
        assert tick_ms > 0 and 0 <= drift_permille < 1000
        self._tick_ms = tick_ms
        self._drift = drift_permille
        self._ttl_ms: dict[int, int] = {}
        self._deadline: dict[int, int] = {}  # lease -> the tick it expires at (after it)
        # (deadline, lease), stale entries included (dropped as they surface): the next
        # expiry is found without looking at every lease each tick.
        self._heap: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self._ttl_ms)

    def ticks_for(self, ttl_ms: int) -> int:
        """Ticks of this clock that are at least ``ttl_ms`` of real time."""
        return -(-ttl_ms * 1000 // ((1000 - self._drift) * self._tick_ms))

    def led(self, leases: dict[int, int], now: int) -> None:
        """This node began to lead the meta range at tick ``now``; ``leases``: id -> TTL in
        ms, as the table it applied holds them. Each gets a full TTL from now."""
        self._ttl_ms = dict(leases)
        self._deadline = {lease: now + self.ticks_for(ttl) for lease, ttl in leases.items()}
        self._heap = [(deadline, lease) for lease, deadline in self._deadline.items()]
        heapq.heapify(self._heap)

    def stopped_leading(self) -> None:
        self._ttl_ms.clear()
        self._deadline.clear()
        self._heap.clear()

    def _set(self, lease: int, deadline: int) -> None:
        self._deadline[lease] = deadline
        heapq.heappush(self._heap, (deadline, lease))

    def granted(self, lease: int, ttl_ms: int, now: int) -> None:
        self._ttl_ms[lease] = ttl_ms
        self._set(lease, now + self.ticks_for(ttl_ms))

    def revoked(self, lease: int) -> None:
        self._ttl_ms.pop(lease, None)
        self._deadline.pop(lease, None)

    def keep_alive(self, lease: int, now: int) -> int | None:
        """A keep-alive arrived: the lease's TTL in ms (None: no such lease here)."""
        ttl = self._ttl_ms.get(lease)
        if ttl is None:
            return None
        self._set(lease, now + self.ticks_for(ttl))
        return ttl

    def ttl_ms(self, lease: int) -> int | None:
        return self._ttl_ms.get(lease)

    def leases(self) -> list[int]:
        return list(self._ttl_ms)

    def remaining_ms(self, lease: int, now: int) -> int | None:
        """At least this long before the lease may expire, in ms of this clock (None: no
        such lease here)."""
        deadline = self._deadline.get(lease)
        if deadline is None:
            return None
        return max(0, deadline - now) * self._tick_ms

    def expired(self, now: int) -> list[int]:
        """Leases whose deadline has passed, in id order (to be revoked through the log)."""
        heap, deadlines = self._heap, self._deadline
        out = set()
        while heap and heap[0][0] < now:
            deadline, lease = heapq.heappop(heap)
            if deadlines.get(lease) == deadline:
                out.add(lease)
        # Still expired until revoked: asked again, they are found again.
        for lease in out:
            heapq.heappush(heap, (deadlines[lease], lease))
        return sorted(out)
