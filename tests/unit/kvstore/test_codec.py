"""The command and result codec: exact round trips; corruption is always detected."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvstore.model import (
    CodecError,
    Command,
    DeleteResult,
    KvStateMachine,
    MemoryEngine,
    PutResult,
    TxnResult,
    decode_command,
    decode_result,
    encode_command,
    encode_result,
)
from tests.unit.kvstore.strategies import commands


@given(commands)
def test_commands_round_trip(cmd: Command) -> None:
    assert decode_command(encode_command(cmd)) == cmd


@given(st.lists(commands, min_size=1, max_size=8))
def test_results_round_trip(cmds: list[Command]) -> None:
    sm = KvStateMachine(MemoryEngine())
    for slot, cmd in enumerate(cmds, start=1):
        [(_, result)] = sm.apply(slot, [encode_command(cmd)])
        if isinstance(result, PutResult | DeleteResult | TxnResult):
            assert decode_result(encode_result(result)) == result


@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_exactly_or_raise_codec_error(data: bytes) -> None:
    """Anything else (IndexError, UnicodeError, ...) escaping would crash a node."""
    try:
        cmd = decode_command(data)
    except CodecError:
        return
    assert encode_command(cmd) == data


@given(commands, st.data())
def test_every_single_bit_flip_is_detected(cmd: Command, data: st.DataObject) -> None:
    frame = bytearray(encode_command(cmd))
    bit = data.draw(st.integers(0, len(frame) * 8 - 1))
    frame[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(CodecError):
        decode_command(bytes(frame))
