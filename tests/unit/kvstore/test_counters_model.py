"""A counter in the state machine: takes hand out consecutive ranges that never overlap, a
retried take (same request id) answers the range it took and moves nothing, and the limits
(a take's count, the counter's ceiling) refuse without changing anything."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster import RangeDescriptor
from cluster.counter_keys import (
    COUNTERS,
    TAKE_COUNT_MAX,
    VALUE_MAX,
    counter_key,
    decode_value,
    valid_name,
)
from kvstore.model import KvStateMachine, MemoryEngine, MemoryStore, Put, RequestId, encode_command
from kvstore.model.commands import (
    Command,
    CounterSpent,
    Invalid,
    OutOfRange,
    Split,
    SplitDone,
    StaleRequest,
    Take,
    Taken,
    decode_command,
    decode_result,
    encode_result,
)

NO = RequestId(0, 0)
WHOLE = RangeDescriptor(1, b"", b"", (1, 2, 3), 1)
IDS = counter_key(b"shortener/ids")


class Shard:
    def __init__(self) -> None:
        self.engine = MemoryEngine()
        self.machine = KvStateMachine(self.engine, initial=WHOLE)
        self.slot = 0

    def apply(self, *cmds: Command) -> list[object]:
        self.slot += 1
        return [r for _, r in self.machine.apply(self.slot, [encode_command(c) for c in cmds])]

    def value(self, key: bytes = IDS) -> int | None:
        record = self.engine.get(key)
        return decode_value(record.value if record is not None else None)


def test_takes_hand_out_consecutive_ranges_and_the_counter_reads_in_decimal() -> None:
    s = Shard()
    assert s.value() == 0
    assert s.apply(Take(NO, IDS, 100_000), Take(NO, IDS, 1)) == [
        Taken(0, 100_000, 1),
        Taken(100_000, 100_001, 2),
    ]
    record = s.engine.get(IDS)
    assert record is not None and record.value == b"100001"
    other = counter_key(b"other")
    assert s.apply(Take(NO, other, 5)) == [Taken(0, 5, 3)]  # counters are independent


def test_a_retried_take_answers_its_range_and_moves_nothing() -> None:
    s = Shard()
    first = RequestId(7, 1)
    [taken] = s.apply(Take(first, IDS, 10))
    s.apply(Take(RequestId(8, 1), IDS, 10))  # someone else's take in between
    assert s.apply(Take(first, IDS, 10)) == [taken] == [Taken(0, 10, 1)]
    assert s.value() == 20
    assert s.apply(Take(RequestId(7, 0), IDS, 10)) == [StaleRequest(1)]
    assert s.value() == 20


def test_a_take_s_count_is_within_its_limits() -> None:
    s = Shard()
    assert s.apply(Take(NO, IDS, TAKE_COUNT_MAX)) == [Taken(0, TAKE_COUNT_MAX, 1)]
    assert s.apply(Take(NO, IDS, TAKE_COUNT_MAX - 1))[0] == Taken(
        TAKE_COUNT_MAX, 2 * TAKE_COUNT_MAX - 1, 2
    )
    for count in (0, TAKE_COUNT_MAX + 1):
        [refused] = s.apply(Take(RequestId(9, count + 1), IDS, count))
        assert isinstance(refused, Invalid)
    assert s.value() == 2 * TAKE_COUNT_MAX - 1


def test_the_counter_stops_at_its_ceiling_without_changing() -> None:
    s = Shard()
    s.apply(Put(NO, IDS, b"%d" % (VALUE_MAX - 5)))  # only a write around the service can
    assert s.apply(Take(NO, IDS, 4)) == [Taken(VALUE_MAX - 5, VALUE_MAX - 1, 2)]
    assert s.apply(Take(NO, IDS, 2)) == [CounterSpent(VALUE_MAX - 1)]
    retried = RequestId(3, 1)
    assert s.apply(Take(retried, IDS, 2)) == [CounterSpent(VALUE_MAX - 1)]
    assert s.apply(Take(retried, IDS, 1)) == [Taken(VALUE_MAX - 1, VALUE_MAX, 3)]  # not cached
    assert s.apply(Take(NO, IDS, 1)) == [CounterSpent(VALUE_MAX)]
    assert s.value() == VALUE_MAX


@pytest.mark.parametrize("value", [b"abc", b"-1", b"1" * 20, b""])
def test_a_key_that_holds_no_counter_is_refused_not_a_crash(value: bytes) -> None:
    s = Shard()
    s.apply(Put(NO, IDS, value))
    [refused] = s.apply(Take(NO, IDS, 1))
    assert isinstance(refused, Invalid)
    [outside] = s.apply(Take(NO, b"user-key", 1))  # a take is only of a counter's key
    assert isinstance(outside, Invalid) and s.engine.get(b"user-key") is None


def test_take_and_taken_round_trip() -> None:
    take = Take(RequestId(3, 9), IDS, TAKE_COUNT_MAX)
    assert decode_command(encode_command(take)) == take
    assert decode_result(encode_result(Taken(7, 10, 11))) == Taken(7, 10, 11)


@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 50)), min_size=1, max_size=40))
def test_any_sequence_of_takes_and_retries_never_overlaps(takes: list[tuple[int, int]]) -> None:
    """Each of four clients takes in turn, and sometimes sends its last take again (a
    retry): the distinct ranges tile [0, counter) exactly, and a retry is its first answer."""
    s = Shard()
    seqs = dict.fromkeys(range(1, 5), 0)
    answered: dict[RequestId, Taken] = {}
    for client, count in takes:
        retry = count % 3 == 0 and seqs[client] > 0
        if not retry:
            seqs[client] += 1
        request = RequestId(client, seqs[client])
        [taken] = s.apply(Take(request, IDS, count))
        assert isinstance(taken, Taken)
        assert answered.setdefault(request, taken) == taken
    ranges = sorted((t.start, t.end) for t in answered.values())
    assert ranges[0][0] == 0
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert ranges[-1][1] == s.value()


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        *((n, True) for n in (b"a", b"shortener/ids", b"A.b_c-9", b"x" * 249)),
        *((n, False) for n in (b"x" * 250, b"", b"a b", b"\xff", b"a\x00")),
    ],
)
def test_names(name: bytes, valid: bool) -> None:
    assert valid_name(name) is valid
    assert counter_key(name).startswith(COUNTERS)


def test_a_take_retried_after_a_split_moved_the_counter_answers_its_range_there() -> None:
    """The counter's key moves to the new shard with the session table: a take applied
    before the split, retried (same request id) at the shard that holds the key now,
    answers the range it took and moves nothing; the parent refuses it as moved."""
    store = MemoryStore()
    parent = KvStateMachine(store.engine(1), initial=WHOLE)
    first = RequestId(5, 1)
    [(_, taken)] = parent.apply(1, [encode_command(Take(first, IDS, 100))])
    assert taken == Taken(0, 100, 1)
    [(_, done)] = parent.apply(2, [encode_command(Split(NO, COUNTERS, 2))])
    assert isinstance(done, SplitDone) and done.right.span.contains(IDS)
    [(_, moved)] = parent.apply(3, [encode_command(Take(first, IDS, 100))])
    assert isinstance(moved, OutOfRange)
    child = KvStateMachine(store.engine(2))
    [(_, again)] = child.apply(child.applied_slot + 1, [encode_command(Take(first, IDS, 100))])
    assert again == taken
    [(_, fresh)] = child.apply(child.applied_slot + 1, [encode_command(Take(NO, IDS, 1))])
    assert fresh == Taken(100, 101, 2)  # the parent's revision carried on
