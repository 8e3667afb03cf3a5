"""The watch hub against the log it is fed: every change in the span after the start, once,
in order per key, across a split, live, caught up from history, and resumed from any
token on another hub (another node)."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.keys import KeySpan
from cluster.position import Position
from cluster.ranges import RangeDescriptor
from kvstore.model import (
    Command,
    KvStateMachine,
    MemoryEngine,
    OpKind,
    Put,
    RequestId,
    Txn,
    TxnOp,
    encode_command,
)
from kvstore.model.commands import Compact, Split, keys_of
from kvstore.model.history import Change
from kvstore.model.watch import ShardHistory, WatchHub, history_since, shard_history
from tests.unit.kvstore.strategies import commands
from tests.unit.kvstore.test_state_machine import sessionless

NO_SESSION = RequestId(0, 0)
WHOLE = KeySpan(b"", b"")
spans = st.sampled_from([WHOLE, KeySpan(b"b", b""), KeySpan(b"", b"c"), KeySpan(b"a", b"k2")])


class OneNode:
    """Shards on one node, their applies fed to watch hubs as a runtime feeds them."""

    def __init__(self) -> None:
        self.engine = MemoryEngine(shard_id=1)  # range 1's, as a node stores it
        whole = RangeDescriptor(1, b"", b"", (1, 2, 3), 1)
        self.machines = {1: KvStateMachine(self.engine, initial=whole)}
        self.slots = {1: 0}
        self.log: list[Change] = []  # every change, in apply order
        self.hubs: list[WatchHub] = []

    def apply(self, cmd: Command, *, then_split: bool = False) -> None:
        """``then_split``: the same slot splits the first shard after ``cmd`` (a watcher
        fed that slot sees changes made before the split and the span after it)."""
        keys = keys_of(cmd)
        shard = next((s for s, m in self.machines.items() if not keys or m.owns(keys[0])), 1)
        if then_split and shard == 1:
            self._apply(1, cmd, Split(NO_SESSION, b"c", 2))
        else:
            self._apply(shard, cmd)
            if then_split:
                self.split()

    def _apply(self, shard: int, *cmds: Command) -> None:
        machine = self.machines[shard]
        self.slots[shard] += 1
        results = machine.apply(self.slots[shard], [encode_command(c) for c in cmds])
        self.log.extend(machine.changes)
        for hub in self.hubs:
            hub.applied(shard, machine.changes, machine.descriptor.span, machine.revision)  # type: ignore[union-attr]
        for _, result in results:
            right = getattr(result, "right", None)
            if right is not None and right.range_id not in self.machines:
                self.machines[right.range_id] = KvStateMachine(self.engine.sibling(right.range_id))
                self.slots[right.range_id] = 1

    def split(self) -> None:
        self._apply(1, Split(NO_SESSION, b"c", 2))

    def history(self, position: Position) -> list[ShardHistory]:
        parts = []
        for shard, m in self.machines.items():
            span = m.descriptor.span  # type: ignore[union-attr]
            changes = history_since(self.engine, span, position, m.revision)
            parts.append(
                ShardHistory(shard, span, m.revision, m.compacted_revision, tuple(changes))
            )
        return parts


def delivered(hub: WatchHub, watch_id: int) -> list[tuple[bytes, int]]:
    watcher = hub.watcher(watch_id)
    assert watcher is not None
    return [(e.change.key, e.change.revision) for d in watcher.outbox for e in d.events]


def expected(log: list[Change], span: KeySpan, after: Position) -> list[tuple[bytes, int]]:
    return [
        (c.key, c.revision) for c in log if span.contains(c.key) and after.is_new(c.key, c.revision)
    ]


def per_key(events: list[tuple[bytes, int]]) -> dict[bytes, list[int]]:
    out: dict[bytes, list[int]] = defaultdict(list)
    for key, revision in events:
        out[key].append(revision)
    return dict(out)


@settings(max_examples=80, deadline=None)
@given(
    before=st.lists(commands.map(sessionless), max_size=12),
    after=st.lists(commands.map(sessionless), max_size=12),
    split_at=st.integers(0, 12),
    span=spans,
    start_back=st.integers(0, 6),
)
def test_watchers_see_each_change_once_in_order_live_caught_up_and_resumed(
    before: list[Command],
    after: list[Command],
    split_at: int,
    span: KeySpan,
    start_back: int,
) -> None:
    node = OneNode()
    live = WatchHub()
    node.hubs.append(live)
    live.add(1, span, Position.at(span, 0), prev_kv=False, now=True)
    for i, cmd in enumerate(before):
        node.apply(cmd, then_split=i == split_at and 2 not in node.machines)
    # A second watcher starts some revisions back and catches up while changes go on: its
    # history is read, more is applied (and held for it), then it is handed the history.
    start = Position.at(span, max(0, node.machines[1].revision - start_back))
    live.add(2, span, start, prev_kv=True, now=False)
    parts = node.history(start)
    for i, cmd in enumerate(after):
        node.apply(cmd, then_split=i + len(before) == split_at and 2 not in node.machines)
        if i == 2:
            live.caught_up(2, parts)
    if len(after) <= 2:
        live.caught_up(2, parts)
    for watch_id, origin in ((1, Position.at(span, 0)), (2, start)):
        got = delivered(live, watch_id)
        assert len(got) == len(set(got)), "a change delivered twice"
        assert per_key(got) == per_key(expected(node.log, span, origin))
    # Resume either watcher from each of its tokens on another node's hub: nothing is
    # missed or repeated.
    for watch_id, origin in ((1, Position.at(span, 0)), (2, start)):
        watcher = live.watcher(watch_id)
        assert watcher is not None and watcher.canceled is None
        deliveries = watcher.outbox
        for cut in range(len(deliveries) + 1):
            resumed_from = deliveries[cut - 1].position if cut else origin
            first_part = [
                (e.change.key, e.change.revision) for d in deliveries[:cut] for e in d.events
            ]
            other = WatchHub()
            other.add(3, span, resumed_from, prev_kv=False, now=False)
            other.caught_up(3, node.history(resumed_from))
            rest = delivered(other, 3)
            assert not set(rest) & set(first_part), f"repeated after resuming at {cut}"
            assert per_key(first_part + rest) == per_key(expected(node.log, span, origin))
            assert Position.from_token(resumed_from.token()) == resumed_from


def test_a_watch_from_a_compacted_revision_is_canceled_naming_it() -> None:
    node = OneNode()
    for i in range(6):
        node.apply(_put(b"a", b"%d" % i))
    node._apply(1, Compact(NO_SESSION, 4))
    hub = WatchHub()
    hub.add(7, WHOLE, Position.at(WHOLE, 2), prev_kv=False, now=False)
    watcher = hub.caught_up(7, node.history(Position.at(WHOLE, 2)))
    assert watcher is not None and watcher.canceled == 4 and not watcher.outbox
    hub.add(8, WHOLE, Position.at(WHOLE, 4), prev_kv=False, now=False)
    ok = hub.caught_up(8, node.history(Position.at(WHOLE, 4)))
    assert ok is not None and ok.canceled is None
    assert [(e.change.key, e.change.revision) for d in ok.outbox for e in d.events] == [
        (b"a", 5),
        (b"a", 6),
    ]


def test_catch_up_events_carry_the_previous_record() -> None:
    node = OneNode()
    for value in (b"x", b"y", b"z"):
        node.apply(_put(b"k", value))
    changes = history_since(node.engine, WHOLE, Position.at(WHOLE, 1), 3)
    assert [(c.revision, c.record.value, c.prev.value) for c in changes] == [  # type: ignore[union-attr]
        (2, b"y", b"x"),
        (3, b"z", b"y"),
    ]


def _put(key: bytes, value: bytes) -> Command:
    return Put(NO_SESSION, key, value)


def test_each_delivery_is_one_revision_with_the_exact_position_after_it() -> None:
    """A Txn's changes travel together; every token is exact, so a reader that stops after
    any delivery resumes without missing or repeating anything (the model test resumes
    from each)."""
    node = OneNode()
    for i in range(5):
        node.apply(_put(b"k%d" % i, b"v"))
    node.apply(
        Txn(
            NO_SESSION,
            (),
            (TxnOp(OpKind.PUT, b"a", b"1"), TxnOp(OpKind.PUT, b"b", b"2")),
            (),
        )
    )
    for hub_now in (False, True):
        hub = WatchHub()
        node.hubs = [hub]
        hub.add(1, WHOLE, Position.at(WHOLE, 0), prev_kv=False, now=hub_now)
        if not hub_now:
            hub.caught_up(1, node.history(Position.at(WHOLE, 0)))
        else:
            node.apply(
                Txn(
                    NO_SESSION,
                    (),
                    (TxnOp(OpKind.PUT, b"c", b"3"), TxnOp(OpKind.PUT, b"d", b"4")),
                    (),
                )
            )
        watcher = hub.watcher(1)
        assert watcher is not None
        for delivery in watcher.outbox:
            revisions = {e.change.revision for e in delivery.events}
            assert len(revisions) == 1
            assert delivery.position.revision_at(b"") == revisions.pop()
        assert len(watcher.outbox[-1].events) == 2


def test_a_catch_up_read_before_a_resync_is_ignored_and_the_latest_delivers() -> None:
    """A snapshot install (``resync``) while a catch-up is on its way makes that catch-up's
    history stale: the state it read was replaced, and the changes the snapshot covered are
    in no feed. Only the read after the latest resync is delivered."""
    node = OneNode()
    hub = WatchHub()
    node.hubs = [hub]
    node.apply(_put(b"a", b"1"))
    hub.add(1, WHOLE, Position.at(WHOLE, 0), prev_kv=False, now=False)
    stale = node.history(Position.at(WHOLE, 0))
    node.hubs = []  # these changes reach this node only in a snapshot (no feed)
    node.apply(_put(b"b", b"2"))
    node.hubs = [hub]
    sync = hub.resync(1)
    assert sync == 1
    fresh = node.history(Position.at(WHOLE, 0))
    node.apply(_put(b"c", b"3"))  # fed, held
    assert hub.caught_up(1, stale, 0) is None
    watcher = hub.caught_up(1, fresh, sync)
    assert watcher is not None
    assert delivered(hub, 1) == [(b"a", 1), (b"b", 2), (b"c", 3)]


def test_watchers_at_one_position_share_their_deliveries_and_move_together() -> None:
    """Watchers of one span at one position are fed once and told the same; one that
    starts later (another position) is fed on its own, and none is told the same twice."""
    node = OneNode()
    hub = WatchHub()
    node.hubs = [hub]
    for watch_id in (1, 2, 3):
        hub.add(watch_id, WHOLE, Position.at(WHOLE, 0), prev_kv=False, now=True)
    hub.add(4, KeySpan(b"b", b""), Position.at(KeySpan(b"b", b""), 0), prev_kv=False, now=True)
    for i in range(3):
        node.apply(_put(b"a%d" % i, b"v"))
    hub.add(5, WHOLE, Position.at(WHOLE, 2), prev_kv=False, now=True)
    for i in range(3):
        node.apply(_put(b"b%d" % i, b"v"))
    alone = delivered(hub, 1)
    assert alone == [(b"a0", 1), (b"a1", 2), (b"a2", 3), (b"b0", 4), (b"b1", 5), (b"b2", 6)]
    assert delivered(hub, 2) == delivered(hub, 3) == alone
    assert delivered(hub, 4) == alone[3:]
    assert delivered(hub, 5) == alone[3:]  # added after a2, fed only what came later
    watchers = [hub.watcher(i) for i in (1, 2, 3, 5)]
    assert len({w.position for w in watchers if w is not None}) == 1


def test_a_catch_up_read_of_a_shard_split_since_it_was_listed_is_refused() -> None:
    """The hosted shards are listed, then a split commits before the node hears of it: the
    parent's read holds the left part only and the new shard was not listed, so the right
    part's changes up to the split would be read by no shard, and the new shard's next
    change would advance the position past them (sim seed 1585). That read is refused
    (None); listed anew and read again, the shards deliver every change once."""
    node = OneNode()
    node.apply(_put(b"d", b"1"))  # revision 1, before the watch: in no feed of its
    hub = WatchHub()
    node.hubs = [hub]
    start = Position.at(WHOLE, 0)
    hub.add(1, WHOLE, start, prev_kv=False, now=False)
    listed = node.machines[1].descriptor
    assert listed is not None
    node.split()  # committed; the node has not heard of it when the read runs
    assert shard_history(node.engine, listed, start) is None
    fresh = [
        shard_history(node.engine.sibling(shard), m.descriptor, start)  # type: ignore[arg-type]
        for shard, m in node.machines.items()
    ]
    assert all(part is not None for part in fresh)
    hub.caught_up(1, [part for part in fresh if part is not None])
    node.apply(_put(b"d", b"2"))  # the new shard's first change: revision 2
    assert delivered(hub, 1) == [(b"d", 1), (b"d", 2)]


def test_a_catch_up_read_of_a_successor_before_its_base_is_written_is_refused() -> None:
    """A node learns of a stop's successor (a snapshot of the ended range) a job before the
    successor's first state is written: read then, it is at revision 0 with no history, and
    its first apply would advance the watcher past the ended range's last changes (sim seed
    876). That read is refused (None); read after the base, it holds every change."""
    node = OneNode()
    for i in range(3):
        node.apply(_put(b"k%d" % i, b"v"))
    ended = node.machines[1].descriptor
    assert ended is not None
    successor = RangeDescriptor(7, b"", b"", (2, 3, 4), ended.generation + 1)
    start = Position.at(WHOLE, 1)
    assert shard_history(node.engine.sibling(7), successor, start) is None
    node.machines[1].write_successor_base(successor)
    part = shard_history(node.engine.sibling(7), successor, start)
    assert part is not None
    assert [(c.key, c.revision) for c in part.changes] == [(b"k1", 2), (b"k2", 3)]
