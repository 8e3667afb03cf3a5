"""The meta leader's lease deadlines: never early by real time whatever the clock's drift,
a full TTL from each keep-alive, and from a new leader's start."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kvstore.model.lease_clock import LeaseClock

TICK_MS = 10


@given(
    ttl_ms=st.integers(1, 60_000),
    drift=st.integers(0, 999),
    fast=st.booleans(),
)
def test_a_lease_never_expires_before_its_ttl_of_real_time(
    ttl_ms: int, drift: int, fast: bool
) -> None:
    """With the leader's clock at its fastest allowed (a tick lasts (1 - rho) * tick of
    real time), the first tick the lease is expired at lies at least its TTL after the
    grant in real time; a slow clock only waits longer."""
    clock = LeaseClock(TICK_MS, drift)
    clock.granted(1, ttl_ms, now=0)
    tick_real_ms = TICK_MS * (1000 - drift) / 1000 if fast else TICK_MS
    first_expired = next(t for t in range(10**7) if clock.expired(t))
    assert first_expired * tick_real_ms >= ttl_ms


def test_keep_alives_and_a_new_leader_give_a_full_ttl_and_revoked_leases_are_gone() -> None:
    clock = LeaseClock(TICK_MS, 100)
    full = clock.ticks_for(3000)
    assert full == 334  # 3 s at a clock whose ticks may be 10 % short
    clock.granted(1, 3000, now=0)
    clock.granted(2, 1000, now=0)
    assert clock.keep_alive(1, now=200) == 3000
    assert clock.remaining_ms(1, now=200) == full * TICK_MS
    assert clock.expired(now=200) == [2]
    assert clock.expired(now=200 + full) == [2]
    assert clock.expired(now=201 + full) == [1, 2]
    clock.revoked(2)
    assert clock.keep_alive(2, now=0) is None and clock.remaining_ms(2, now=0) is None
    # A new leader at tick 5000 knows only the table: every lease starts a full TTL again.
    clock.led({1: 3000, 7: 500}, now=5000)
    assert clock.expired(now=5000 + clock.ticks_for(500)) == []
    assert clock.expired(now=5001 + clock.ticks_for(500)) == [7]
    clock.stopped_leading()
    assert len(clock) == 0 and clock.expired(now=10**9) == []
