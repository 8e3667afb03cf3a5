"""The history file says an unknown outcome as ``"ok": null``, as docs/jepsen.md specifies."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import grpc

from kvstore.client import KvError
from kvstore.v1 import kv_pb2
from tests.jepsen.history import HistoryWriter, read_history
from tests.jepsen.workload import Identity, RegisterWorkload


class _Answers:
    """A KV stub whose every Put fails with ``code`` (or succeeds when it is None)."""

    def __init__(self, code: grpc.StatusCode | None) -> None:
        self._code = code

    async def Put(self, request: Any, timeout: float) -> kv_pb2.PutResponse:  # noqa: N802
        if self._code is not None:
            raise KvError(self._code, "as the test says")
        return kv_pb2.PutResponse()


class _Node:
    def __init__(self, code: grpc.StatusCode | None) -> None:
        self.address = "fake"
        self.kv = _Answers(code)


def _recorded_puts(tmp_path: Path, codes: list[grpc.StatusCode | None]) -> list[dict[str, Any]]:
    path = tmp_path / "history.jsonl"
    writer = HistoryWriter(path)
    workload = RegisterWorkload(random.Random(1), writer, active_keys=1, op_timeout_s=1.0)

    async def run() -> None:
        for code in codes:
            await workload.one(_Node(code), Identity(1, 10), "k0", kind="put")

    asyncio.run(run())
    writer.close()
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ok_is_null_exactly_for_an_unknown_outcome(tmp_path: Path) -> None:
    """Deadline: unknown, ``ok`` null; a refusal: ``ok`` false; success: ``ok`` true."""
    unknown, refused, done = _recorded_puts(
        tmp_path,
        [grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INVALID_ARGUMENT, None],
    )
    assert unknown["return"] is None and unknown["ok"] is None and "error" not in unknown
    assert refused["return"] is not None and refused["ok"] is False
    assert refused["error"] == "INVALID_ARGUMENT"
    assert done["return"] is not None and done["ok"] is True
    ops = read_history(tmp_path / "history.jsonl")
    assert [op.ok for op in ops] == [None, False, True]
    assert [op.unknown for op in ops] == [True, False, False]


def test_histories_written_before_null_still_read_as_unknown() -> None:
    """An older file's ``"return": null, "ok": false`` line is the same unknown outcome."""
    from tests.jepsen.history import parse_lines

    line = (
        '{"client": 1, "call": 5, "return": null, "op": "put", "key": "k", "value": "v1",'
        ' "expected": null, "output": null, "ok": false}'
    )
    (op,) = parse_lines([line])
    assert op.unknown and op.ok is None
