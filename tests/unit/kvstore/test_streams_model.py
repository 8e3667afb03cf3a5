"""A partition's log in the state machine: dense offsets assigned in the apply, an append
retried by its producer applied once, retention trims from the front, and no split ever
cuts a partition's row (so one shard, one leader, assigns a partition's offsets)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster import RangeDescriptor
from cluster.stream_keys import (
    group_row,
    partition_row,
    record_key,
    record_offset,
    row_of,
    split_safe,
    valid_name,
)
from kvstore.model import KvStateMachine, MemoryEngine, Put, RequestId, encode_command
from kvstore.model.commands import (
    TRIM_ALL,
    Append,
    Appended,
    Command,
    Invalid,
    Split,
    SplitDone,
    StreamRecord,
    Trim,
    Trimmed,
    decode_command,
    decode_result,
    encode_result,
)
from kvstore.model.streams import Head, decode_head, decode_record

NO = RequestId(0, 0)
WHOLE = RangeDescriptor(1, b"", b"", (1, 2, 3), 1)
ROW = partition_row(b"orders", 3)


class Shard:
    def __init__(self, *, partition: bool = True) -> None:
        self.engine = MemoryEngine()
        self.machine = KvStateMachine(self.engine, initial=WHOLE)
        self.slot = 0
        if partition:
            self.apply(Append(NO, ROW, (), 0))  # the partition made, as a new topic's are

    def apply(self, *cmds: Command) -> list[object]:
        self.slot += 1
        return [r for _, r in self.machine.apply(self.slot, [encode_command(c) for c in cmds])]

    def head(self, row: bytes = ROW) -> Head:
        record = self.engine.get(row)
        return decode_head(record.value if record is not None else None)

    def offsets(self, row: bytes = ROW) -> list[int]:
        end = record_key(row, TRIM_ALL)
        return [record_offset(row, k) for k, _ in self.engine.scan(row + b"\x00", end, 0)]


def batch(*values: bytes, request: RequestId = NO, at_ms: int = 1000) -> Append:
    return Append(request, ROW, tuple(StreamRecord(b"", v) for v in values), at_ms)


def test_appends_get_dense_offsets_in_log_order_at_one_revision_each() -> None:
    s = Shard()
    first, second = s.apply(batch(b"a", b"b", b"c"), batch(b"d"))
    assert first == Appended(0, 3, 2) and second == Appended(3, 1, 3)
    assert s.offsets() == [0, 1, 2, 3]
    assert s.head() == Head(0, 4, s.head().retained_bytes)
    stored = s.engine.get(record_key(ROW, 3))
    assert stored is not None and decode_record(stored.value) == (1000, StreamRecord(b"", b"d"))
    assert s.apply(batch()) == [Appended(4, 0, 3)]  # made already: nothing changes


def test_a_producer_s_retried_batch_appends_once() -> None:
    s = Shard()
    producer = RequestId(41, 7)
    [once] = s.apply(batch(b"x", b"y", request=producer))
    [again] = s.apply(batch(b"x", b"y", request=producer))  # the answer was lost: resent
    assert once == again == Appended(0, 2, 2)
    assert s.offsets() == [0, 1]


def test_trim_deletes_from_the_front_and_trim_all_resets_the_partition() -> None:
    s = Shard()
    s.apply(batch(b"a", b"bb", b"ccc", b"dddd"))
    whole = s.head().retained_bytes
    [trimmed] = s.apply(Trim(NO, ROW, 2))
    assert trimmed == Trimmed(2, 2, 3)
    assert s.offsets() == [2, 3] and s.head().first == 2 and s.head().next == 4
    assert 0 < s.head().retained_bytes < whole
    assert s.apply(Trim(NO, ROW, 1)) == [Trimmed(2, 0, 3)]  # already gone: nothing changes
    assert s.apply(Trim(NO, ROW, 99)) == [Trimmed(4, 2, 4)]  # never past the next offset
    assert s.head() == Head(4, 4, 0)
    s.apply(Trim(NO, ROW, TRIM_ALL))
    assert s.engine.get(ROW) is None
    [refused] = s.apply(batch(b"late"))  # its topic was deleted: no partition to append to
    assert isinstance(refused, Invalid) and s.offsets() == []
    s.apply(Append(NO, ROW, (), 0))
    assert s.apply(batch(b"new")) == [Appended(0, 1, 7)]  # a topic made again starts at 0


def test_stream_commands_and_the_append_result_round_trip() -> None:
    headed = StreamRecord(b"k", b"v", ((b"h", b"1"), (b"", b"")))
    for cmd in (
        Append(RequestId(3, 9), ROW, (headed, StreamRecord(b"", b"")), 123),
        Trim(NO, ROW, 5),
        Trim(NO, ROW, TRIM_ALL),
    ):
        assert decode_command(encode_command(cmd)) == cmd
    assert decode_result(encode_result(Appended(7, 3, 11))) == Appended(7, 3, 11)


def test_no_split_inside_a_row_and_the_halving_key_stops_at_a_row_s_start() -> None:
    s = Shard()
    other = partition_row(b"orders", 4)
    s.apply(batch(b"x" * 100, b"y" * 100, b"z" * 100))
    s.apply(Append(NO, other, (), 0), Append(NO, other, (StreamRecord(b"", b"w" * 10),), 1))
    [refused] = s.apply(Split(NO, record_key(ROW, 1), 2))
    assert isinstance(refused, Invalid) and "row" in refused.reason
    # Most bytes are in the first row: the halving point is the next row's start.
    assert s.machine.halving_key() == other
    [done] = s.apply(Split(NO, other, 2))
    assert isinstance(done, SplitDone)


def test_a_shard_of_one_row_has_no_halving_key() -> None:
    s = Shard()
    s.apply(batch(*(b"r" * 50 for _ in range(20))))
    assert s.machine.halving_key() is None


names = st.binary(min_size=1, max_size=8).filter(valid_name)
partitions = st.integers(0, 1023)


@given(names, partitions, st.integers(0, 2**64 - 2), st.binary(max_size=6))
def test_every_key_inside_a_row_is_no_split_point(
    topic: bytes, partition: int, offset: int, tail: bytes
) -> None:
    row = partition_row(topic, partition)
    assert split_safe(row) and row_of(row) == row
    inside = record_key(row, offset)
    assert row_of(inside) == row and not split_safe(inside)
    group = group_row(b"g", topic, partition)
    assert split_safe(group) and not split_safe(group + b"own" + tail)
    assert record_offset(row, inside) == offset


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        *((n, True) for n in (b"a", b"A.b_c-9", b"x" * 249)),
        *((n, False) for n in (b"x" * 250, b"", b"a/b", b"a b", b"\xff")),
    ],
)
def test_names_are_kafka_s(name: bytes, valid: bool) -> None:
    assert valid_name(name) is valid


def test_user_keys_are_unaffected() -> None:
    s = Shard(partition=False)
    s.apply(*(Put(NO, b"k%02d" % i, b"v" * 10) for i in range(10)))
    assert s.machine.halving_key() == b"k05"
