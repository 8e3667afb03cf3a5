"""The KV state machine against a naive reference model, and its exactly-once sessions."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.config import KEY_BYTES_HARD_MAX, VALUE_BYTES_HARD_MAX
from kvstore.model import (
    Command,
    Compare,
    CompareOp,
    Delete,
    DeleteResult,
    Invalid,
    KvStateMachine,
    Malformed,
    MemoryEngine,
    OpKind,
    Put,
    PutResult,
    RequestId,
    StaleRequest,
    Target,
    Txn,
    TxnOp,
    TxnResult,
    encode_command,
    encoded_bytes_max,
)
from kvstore.model.commands import TXN_COMPARES_MAX, TXN_OPS_MAX
from kvstore.storage import NodeStore
from tests.unit.kvstore.strategies import commands

NO_SESSION = RequestId(0, 0)


@dataclass
class Reference:
    """The specification, written the obvious way: key -> [value, create, mod, version]."""

    revision: int = 0
    data: dict[bytes, list[object]] = field(default_factory=dict)

    def holds(self, c: Compare) -> bool:
        row = self.data.get(c.key)
        if c.target is Target.VALUE:
            if row is None:
                return False
            left: object = row[0]
            right: object = c.value
        else:
            index = {Target.CREATE_REVISION: 1, Target.MOD_REVISION: 2, Target.VERSION: 3}[c.target]
            left, right = (row[index] if row else 0), c.number
        return {
            CompareOp.EQUAL: left == right,
            CompareOp.NOT_EQUAL: left != right,
            CompareOp.LESS: left < right,  # type: ignore[operator]
            CompareOp.GREATER: left > right,  # type: ignore[operator]
        }[c.op]

    def write(self, key: bytes, value: bytes | None, rev: int) -> bool:
        row = self.data.get(key)
        if value is None:
            return self.data.pop(key, None) is not None
        self.data[key] = [value, row[1] if row else rev, rev, (row[3] if row else 0) + 1]  # type: ignore[operator]
        return True

    def apply(self, cmd: Command) -> None:
        rev = self.revision + 1
        if isinstance(cmd, Put):
            self.write(cmd.key, cmd.value, rev)
            self.revision = rev
        elif isinstance(cmd, Delete):
            if self.write(cmd.key, None, rev):
                self.revision = rev
        else:
            ok = all(self.holds(c) for c in cmd.compares)
            changed = False
            for op in cmd.success if ok else cmd.failure:
                if op.kind is OpKind.PUT:
                    changed |= self.write(op.key, op.value, rev)
                elif op.kind is OpKind.DELETE:
                    changed |= self.write(op.key, None, rev)
            if changed:
                self.revision = rev


def sessionless(cmd: Command) -> Command:
    return type(cmd)(NO_SESSION, *[getattr(cmd, f) for f in cmd.__slots__[1:]])  # type: ignore[arg-type,attr-defined]


@given(st.lists(commands.map(sessionless), max_size=30))
def test_agrees_with_the_reference_model(cmds: list[Command]) -> None:
    """Same data, same revisions, same versions as the obvious specification."""
    sm, ref = KvStateMachine(MemoryEngine()), Reference()
    for slot, cmd in enumerate(cmds, start=1):
        sm.apply(slot, [encode_command(cmd)])
        ref.apply(cmd)
        assert sm.revision == ref.revision
    kvs, more = sm.scan(b"", b"", 0)
    assert not more
    assert {
        kv.key: [kv.value, kv.create_revision, kv.mod_revision, kv.version] for kv in kvs
    } == ref.data


@given(st.lists(commands.map(sessionless), max_size=30))
def test_each_change_takes_exactly_the_next_revision(cmds: list[Command]) -> None:
    """A command that changes data moves the revision by one; anything else leaves it."""
    sm = KvStateMachine(MemoryEngine())
    for slot, cmd in enumerate(cmds, start=1):
        before = sm.revision
        [(_, result)] = sm.apply(slot, [encode_command(cmd)])
        changed = (
            isinstance(result, PutResult)
            or (isinstance(result, DeleteResult) and result.deleted)
            or (isinstance(result, TxnResult) and result.revision != before)
        )
        assert sm.revision == (before + 1 if changed else before)
        if changed:
            assert result.revision == sm.revision  # type: ignore[union-attr]


def test_a_retried_request_applies_once_and_returns_the_same_result() -> None:
    sm = KvStateMachine(MemoryEngine())
    put = encode_command(Put(RequestId(7, 1), b"k", b"v1"))
    [(_, first)] = sm.apply(1, [put])
    [(_, again)] = sm.apply(2, [put])
    assert first == again == PutResult(1, None)
    assert sm.revision == 1
    assert sm.get(b"k").version == 1  # type: ignore[union-attr]


def test_an_older_request_is_stale_and_changes_nothing() -> None:
    sm = KvStateMachine(MemoryEngine())
    sm.apply(1, [encode_command(Put(RequestId(7, 2), b"k", b"new"))])
    [(_, result)] = sm.apply(2, [encode_command(Put(RequestId(7, 1), b"k", b"old"))])
    assert result == StaleRequest(2)
    assert sm.get(b"k").value == b"new"  # type: ignore[union-attr]


def test_sessions_survive_a_restart_on_the_same_engine() -> None:
    engine = MemoryEngine()
    put = encode_command(Put(RequestId(9, 4), b"k", b"v"))
    KvStateMachine(engine).apply(1, [put])
    restarted = KvStateMachine(engine)
    assert restarted.applied_slot == 1 and restarted.revision == 1
    [(_, result)] = restarted.apply(2, [put])
    assert result == PutResult(1, None)
    assert restarted.revision == 1


@given(st.lists(st.lists(commands, min_size=1, max_size=4), max_size=12))
def test_a_carried_session_table_behaves_like_one_loaded_from_disk(
    batches: list[list[Command]],
) -> None:
    """The runtime hands each transaction's machine the previous one's session table; that
    must be indistinguishable from loading the table from the engine every time."""
    carried_engine, loaded_engine = MemoryEngine(), MemoryEngine()
    table = None
    for slot, batch in enumerate(batches, start=1):
        raw = [encode_command(cmd) for cmd in batch]
        carried = KvStateMachine(carried_engine, sessions_max=3, sessions=table)
        loaded = KvStateMachine(loaded_engine, sessions_max=3)
        assert carried.apply(slot, raw) == loaded.apply(slot, raw)
        table = carried.session_table
    assert carried_engine.meta_scan(b"") == loaded_engine.meta_scan(b"")


def test_eviction_among_sessions_of_one_slot_does_not_depend_on_apply_order() -> None:
    """Replicas group slots into transactions differently, so one replica's table may be
    carried in apply order while another's was loaded from disk: eviction must pick the
    same session either way (the oldest slot's lowest client id)."""

    def put(client: int, key: bytes) -> bytes:
        return encode_command(Put(RequestId(client, 1), key, b"v"))

    slots = [[put(5, b"a"), put(2, b"b")], [put(7, b"c"), put(8, b"d")], [put(2, b"b")]]
    carried_engine, loaded_engine = MemoryEngine(), MemoryEngine()
    table = None
    for slot, raw in enumerate(slots, start=1):
        carried = KvStateMachine(carried_engine, sessions_max=3, sessions=table)
        loaded = KvStateMachine(loaded_engine, sessions_max=3)
        assert carried.apply(slot, raw) == loaded.apply(slot, raw), slot
        table = carried.session_table


def test_the_least_recently_used_session_is_forgotten_first() -> None:
    sm = KvStateMachine(MemoryEngine(), sessions_max=2)
    for slot, client in enumerate((1, 2, 1, 3), start=1):
        sm.apply(slot, [encode_command(Put(RequestId(client, 1), b"k%d" % client, b"v"))])
    # client 2 was least recently used when client 3 arrived: its retry applies again.
    [(_, result)] = sm.apply(5, [encode_command(Put(RequestId(2, 1), b"k2", b"v"))])
    assert isinstance(result, PutResult) and result.revision == 4
    # ... which pushed client 1 out in turn: its retry applies again too.
    [(_, result)] = sm.apply(6, [encode_command(Put(RequestId(1, 1), b"k1", b"v"))])
    assert isinstance(result, PutResult) and result.revision == 5


def test_compare_and_swap() -> None:
    """Jepsen's cas: succeed only if the value is the expected one; absent means version 0."""
    sm = KvStateMachine(MemoryEngine())

    def cas(slot: int, expected: bytes | None, new: bytes) -> bool:
        compare = (
            Compare(b"r", Target.VERSION, CompareOp.EQUAL, number=0)
            if expected is None
            else Compare(b"r", Target.VALUE, CompareOp.EQUAL, value=expected)
        )
        txn = Txn(NO_SESSION, (compare,), (TxnOp(OpKind.PUT, b"r", new),), ())
        [(_, result)] = sm.apply(slot, [encode_command(txn)])
        assert isinstance(result, TxnResult)
        return result.succeeded

    assert cas(1, None, b"x")
    assert not cas(2, None, b"y")
    assert not cas(3, b"y", b"z")
    assert cas(4, b"x", b"z")
    assert sm.get(b"r").value == b"z"  # type: ignore[union-attr]


def test_garbage_in_the_log_is_a_deterministic_malformed_result() -> None:
    sm = KvStateMachine(MemoryEngine())
    [(request, result)] = sm.apply(1, [b"not a command"])
    assert request is None and isinstance(result, Malformed)
    assert sm.applied_slot == 1


def test_scan_pages_with_a_limit() -> None:
    sm = KvStateMachine(MemoryEngine())
    sm.apply(1, [encode_command(Put(NO_SESSION, k, b"v")) for k in (b"a", b"b", b"c", b"d")])
    page, more = sm.scan(b"b", b"", 2)
    assert [kv.key for kv in page] == [b"b", b"c"] and more
    page, more = sm.scan(b"b", b"d", 0)
    assert [kv.key for kv in page] == [b"b", b"c"] and not more


def test_leader_placement_is_state_a_snapshot_carries_and_no_revision_counts() -> None:
    from kvstore.model import PlacementSet, SetPlacement, decode_command, snapshot

    sm = KvStateMachine(MemoryEngine())
    assert sm.leader_dc is None
    command = SetPlacement(NO_SESSION, "dc2")
    assert decode_command(encode_command(command)) == command
    [(_, result)] = sm.apply(1, [encode_command(command)])
    assert result == PlacementSet("dc2") and sm.leader_dc == "dc2" and sm.revision == 0
    copy = MemoryEngine()
    snapshot.restore(copy, snapshot.dump(sm._engine))
    assert KvStateMachine(copy).leader_dc == "dc2"
    sm.apply(2, [encode_command(SetPlacement(NO_SESSION, ""))])
    assert sm.leader_dc is None


# ---------------------------------------------------------------------- every size, every engine

KEY_SIZES = (0, 1, 439, 440, 441, 4095, 4096, 4097, 8192)  # to twice the 4 KiB limit
VALUE_SIZES = (0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 2 << 20)  # to twice 1 MiB
sized_keys = st.one_of(
    st.builds(lambda n, b: bytes([b]) * n, st.sampled_from(KEY_SIZES), st.integers(0, 255)),
    st.builds(lambda tail: b"x" * 500 + tail, st.binary(max_size=4)),  # long keys, one head
    st.binary(max_size=8192),
)
sized_values = st.one_of(
    st.binary(max_size=16),
    st.builds(lambda n: b"v" * n, st.sampled_from(VALUE_SIZES)),
    st.builds(bytes, st.integers(0, 2 << 20)),
)
sized_commands = st.one_of(
    st.builds(Put, st.just(NO_SESSION), sized_keys, sized_values),
    st.builds(Delete, st.just(NO_SESSION), sized_keys),
    st.builds(
        Txn,
        st.just(NO_SESSION),
        st.lists(
            st.builds(
                Compare,
                sized_keys,
                st.sampled_from(Target),
                st.sampled_from(CompareOp),
                st.binary(max_size=8),
                st.integers(0, 3),
            ),
            max_size=2,
        ).map(tuple),
        st.lists(
            st.builds(TxnOp, st.sampled_from(OpKind), sized_keys, sized_values), max_size=3
        ).map(tuple),
        st.just(()),
    ),
)


@settings(max_examples=40)
@given(st.lists(sized_commands, max_size=8))
def test_commands_of_every_size_apply_alike_on_lmdb_and_in_memory(cmds: list[Command]) -> None:
    """Keys from 0 to 8 KiB and values from 0 to 2 MiB (twice the documented limits), arbitrary
    bytes: the LMDB-backed state machine gives the results and the state the in-memory one
    does, and apply never raises (a long key once made every replica's apply raise)."""
    with tempfile.TemporaryDirectory() as path:
        store = NodeStore(path, map_size=1 << 30)
        try:
            memory = KvStateMachine(MemoryEngine())
            for slot, cmd in enumerate(cmds, start=1):
                with store.write() as batch:
                    on_disk = KvStateMachine(batch.engine(1)).apply(slot, [encode_command(cmd)])
                assert on_disk == memory.apply(slot, [encode_command(cmd)])
            with store.read(1) as engine:
                assert KvStateMachine(engine).scan(b"", b"", 0) == memory.scan(b"", b"", 0)
        finally:
            store.close()


def test_a_command_over_the_hard_limits_is_refused_alike_and_changes_nothing() -> None:
    """The state machine's own limits, far above any configured one: a command beyond them is
    an ``Invalid`` result on every replica, touching neither data, revision nor session."""
    over_key = Put(RequestId(5, 1), b"k" * (KEY_BYTES_HARD_MAX + 1), b"v")
    over_values = Txn(
        RequestId(5, 2),
        (),
        (
            TxnOp(OpKind.PUT, b"a", b"x" * (VALUE_BYTES_HARD_MAX // 2)),
            TxnOp(OpKind.PUT, b"b", b"x" * (VALUE_BYTES_HARD_MAX // 2 + 1)),
        ),
        (),
    )
    at_limits = Put(RequestId(5, 3), b"k" * KEY_BYTES_HARD_MAX, b"v" * 10)
    sm = KvStateMachine(MemoryEngine())
    results = sm.apply(1, [encode_command(c) for c in (over_key, over_values, at_limits)])
    assert [type(r).__name__ for _, r in results] == ["Invalid", "Invalid", "PutResult"]
    assert sm.revision == 1
    assert [kv.key for kv in sm.scan(b"", b"", 0)[0]] == [b"k" * KEY_BYTES_HARD_MAX]
    [(_, again)] = sm.apply(2, [encode_command(over_key)])  # a retry is refused alike
    assert isinstance(again, Invalid)


def test_encoded_bytes_max_bounds_the_largest_command_the_edge_admits() -> None:
    """The biggest Txn the edge lets through (every compare and op, the longest keys, the
    values at their total limit) fits in exactly ``encoded_bytes_max``: a leader sizes its
    slots by it, so no admitted command is refused as too large."""
    k, v = 4096, 1 << 20
    compares = tuple(
        Compare(b"c" * k, Target.VALUE, CompareOp.EQUAL, value=b"") for _ in range(TXN_COMPARES_MAX)
    )
    ops = tuple(TxnOp(OpKind.PUT, b"o" * k, b"") for _ in range(TXN_OPS_MAX - 1))
    biggest = Txn(
        RequestId(1, 1), compares, (*ops, TxnOp(OpKind.PUT, b"o" * k, b"v" * v)), (*ops, ops[0])
    )
    assert len(encode_command(biggest)) == encoded_bytes_max(k, v)
    assert len(encode_command(Put(RequestId(1, 1), b"k" * k, b"v" * v))) < encoded_bytes_max(k, v)


def test_scan_stops_at_a_byte_budget_but_always_answers_one_key() -> None:
    """A scan over large values answers at most ``bytes_max`` of keys and values (at least
    one key, however large), says more exist, and reads the engine a page at a time."""
    sm = KvStateMachine(MemoryEngine())
    keys = [b"k%04d" % i for i in range(600)]  # over two engine pages
    sm.apply(1, [encode_command(Put(NO_SESSION, k, b"v" * 100)) for k in keys])
    page, more = sm.scan(b"", b"", 0, bytes_max=1050)
    assert [kv.key for kv in page] == keys[:10] and more  # 10 x 105 bytes
    page, more = sm.scan(b"", b"", 0, bytes_max=1)
    assert [kv.key for kv in page] == keys[:1] and more
    page, more = sm.scan(b"", b"", 0)
    assert [kv.key for kv in page] == keys and not more
    page, more = sm.scan(b"k0100", b"k0400", 290)
    assert [kv.key for kv in page] == keys[100:390] and more
    page, more = sm.scan(b"k0100", b"k0400", 300)
    assert [kv.key for kv in page] == keys[100:400] and not more
