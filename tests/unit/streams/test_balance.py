"""The event processors' balancing rule: whatever the sequence of joins, leaves, crashes and
lost compare-and-sets, once membership holds still the live processors own every partition
and differ by at most one; a take never replaces a claim other than the one it read; and a
steal only ever evens out (never from an owner at or below its fair share)."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from kvstore.streams.balance import Take, fair_share, plan

NAMES = [f"p{i}" for i in range(6)]


class Group:
    """Ownership records (one per partition: a take is a compare-and-set on it) and the
    processors, live or not (a crashed one's claims stay until someone takes them)."""

    def __init__(self, partitions: int, seed: int) -> None:
        self.partitions = partitions
        self.owners: dict[int, str] = {}
        self.live: set[str] = set()
        self.rng = random.Random(seed)

    def cycle(self, me: str, stale: dict[int, str] | None = None) -> Take | None:
        """``me`` plans on what it read (``stale``: an older read) and tries to take."""
        seen = dict(self.owners) if stale is None else stale
        take = plan(self.partitions, seen, self.live, me, self.rng)
        if take is None:
            return None
        owner_now = self.owners.get(take.partition)
        assert take.owner == seen.get(take.partition)  # it replaces the claim it read
        if owner_now != take.owner:
            return None  # the compare-and-set fails: someone else moved first
        if owner_now is not None and owner_now in self.live:
            # A steal only ever evens out: from an owner above its fair share, holding at
            # least two more than the thief (else the move just swaps who has the extra).
            counts = Counter(o for o in self.owners.values() if o in self.live)
            share, _ = fair_share(self.partitions, len(self.live))
            robbed, mine = counts[owner_now], counts[me]
            assert robbed > share and robbed >= mine + 2, f"{me} ({mine}) robbed {owner_now}"
        self.owners[take.partition] = me
        return take

    def settle(self) -> int:
        """Cycles of every live processor until a whole round takes nothing: rounds used."""
        for rounds in range(1, 4 * self.partitions + 10):
            moved = [self.cycle(me) for me in sorted(self.live)]
            if not any(moved):
                return rounds
        raise AssertionError(f"never settled: {self.owners} live={sorted(self.live)}")


events = st.lists(
    st.tuples(
        st.sampled_from(["join", "leave", "crash", "cycle", "stale"]), st.sampled_from(NAMES)
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 24), events, st.integers(0, 2**32))
def test_any_history_settles_to_within_one_and_every_partition_owned(
    partitions: int, history: list[tuple[str, str]], seed: int
) -> None:
    group = Group(partitions, seed)
    old_read: dict[int, str] = {}
    for kind, name in history:
        if kind == "join":
            group.live.add(name)
        elif kind == "leave":  # gracefully: its claims are deleted with its lease
            group.live.discard(name)
            group.owners = {p: o for p, o in group.owners.items() if o != name}
        elif kind == "crash":  # its claims stay, but it is no longer live
            group.live.discard(name)
        elif name in group.live:
            group.cycle(name, old_read if kind == "stale" else None)
        old_read = dict(group.owners)
    if not group.live:
        return
    group.settle()
    counts = Counter(o for o in group.owners.values() if o in group.live)
    assert sorted(group.owners) == list(range(partitions))
    assert all(o in group.live for o in group.owners.values())
    load = [counts[name] for name in group.live]
    assert max(load) - min(load) <= 1, (load, group.owners)
    assert all(group.cycle(me) is None for me in sorted(group.live))  # and stays there


def test_a_joiner_takes_one_a_cycle_from_the_most_loaded() -> None:
    group = Group(6, seed=1)
    group.live = {"a"}
    group.settle()
    assert Counter(group.owners.values()) == {"a": 6}
    group.live |= {"b", "c"}
    rounds = group.settle()
    assert Counter(group.owners.values()) == {"a": 2, "b": 2, "c": 2}
    assert rounds == 3  # two takes each (one a cycle), then a quiet round


def test_a_crashed_owner_s_partitions_are_free_to_the_others() -> None:
    group = Group(6, seed=2)
    group.live = {"a", "b", "c"}
    group.settle()
    group.live.discard("c")
    group.settle()
    assert Counter(group.owners.values()) == {"a": 3, "b": 3}


def test_nothing_to_share() -> None:
    assert plan(0, {}, {"a"}, "a", random.Random(0)) is None
    assert plan(3, {0: "a", 1: "a", 2: "a"}, {"a"}, "a", random.Random(0)) is None
