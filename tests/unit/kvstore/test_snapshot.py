"""A shard snapshot restores exactly: data, revision, applied slot and sessions."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kvstore.model import Command, KvStateMachine, MemoryEngine, Put, RequestId, encode_command
from kvstore.model.snapshot import dump, restore
from tests.unit.kvstore.strategies import commands


@given(st.lists(commands, max_size=25), st.lists(commands, max_size=5))
def test_restore_reproduces_the_state_and_replaces_what_was_there(
    history: list[Command], noise: list[Command]
) -> None:
    source = KvStateMachine(MemoryEngine())
    for slot, cmd in enumerate(history, start=1):
        source.apply(slot, [encode_command(cmd)])
    data = dump(source._engine)

    target_engine = MemoryEngine()
    other = KvStateMachine(target_engine)
    for slot, cmd in enumerate(noise, start=1):
        other.apply(slot, [encode_command(cmd)])
    restore(target_engine, data)
    restored = KvStateMachine(target_engine)

    assert restored.revision == source.revision
    assert restored.applied_slot == source.applied_slot
    assert restored.scan(b"", b"", 0) == source.scan(b"", b"", 0)
    assert target_engine.meta_scan(b"") == source._engine.meta_scan(b"")
    # Sessions came along: a retry of a recorded request does not apply again.
    retry = Put(RequestId(99, 1), b"x", b"y")
    slot = restored.applied_slot + 1
    first = restored.apply(slot, [encode_command(retry)])
    assert restored.apply(slot + 1, [encode_command(retry)]) == first
