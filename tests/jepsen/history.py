"""Operation histories: one JSON object per line, in the shape outside checkers read.

    {"client": 3, "call": <ns>, "return": <ns or null>, "op": "get"|"put"|"cas"|"delete",
     "key": "k17", "value": "v42" or null, "expected": <cas expected or null>,
     "output": <value a get read, or null if absent>, "ok": true|false|null}

``call``/``return`` come from one monotonic clock in the harness. ``"return": null`` is an
unknown outcome (deadline, UNAVAILABLE, dropped connection, killed node): the operation may
have taken effect at any time after its call, and its ``"ok"`` is ``null`` too (neither
succeeded nor failed: unknown). ``"ok": false`` is only written where the server guarantees
nothing was applied (a cas whose comparison failed, a rejected request). Histories written
before ``null`` was used (``"return": null, "ok": false``) read the same: ``return`` decides.

One key is added to that shape, on ``"ok": false`` lines only: ``"error"`` says why —
``"cas-mismatch"`` (the comparison failed: the value differed from ``expected``, which our
checker uses) or the gRPC status of a request that was refused or never sent. A checker that
ignores it treats every failed operation as one that never happened, as Jepsen does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

OPS = ("get", "put", "cas", "delete")
CAS_MISMATCH = "cas-mismatch"


@dataclass(frozen=True, slots=True)
class Op:
    client: int
    call: int
    ret: int | None  # ``return`` in the file; None: the outcome is unknown
    op: str
    key: str
    value: str | None = None
    expected: str | None = None
    output: str | None = None
    ok: bool | None = True  # None exactly when ``ret`` is: the outcome is unknown
    error: str | None = None  # on ok: false lines: "cas-mismatch" or the refusing status

    def __post_init__(self) -> None:
        assert (self.ok is None) == (self.ret is None), self

    @property
    def unknown(self) -> bool:
        return self.ret is None

    def to_json(self) -> str:
        line: dict[str, Any] = {
            "client": self.client,
            "call": self.call,
            "return": self.ret,
            "op": self.op,
            "key": self.key,
            "value": self.value,
            "expected": self.expected,
            "output": self.output,
            "ok": self.ok,
        }
        if self.error is not None:
            line["error"] = self.error
        return json.dumps(line)

    @staticmethod
    def from_json(obj: dict[str, Any]) -> Op:
        if obj.get("op") not in OPS:
            raise ValueError(f"unknown op {obj.get('op')!r}")
        return Op(
            client=int(obj["client"]),
            call=int(obj["call"]),
            ret=None if obj["return"] is None else int(obj["return"]),
            op=obj["op"],
            key=str(obj["key"]),
            value=obj.get("value"),
            expected=obj.get("expected"),
            output=obj.get("output"),
            ok=None if obj["return"] is None else bool(obj["ok"]),
            error=obj.get("error"),
        )


class HistoryWriter:
    """Appends operations as they complete; flushed per line so a crash keeps the prefix."""

    def __init__(self, path: Path) -> None:
        self._file: TextIO = path.open("w")

    def write(self, op: Op) -> None:
        self._file.write(op.to_json() + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_history(path: Path) -> list[Op]:
    return list(parse_lines(path.read_text().splitlines()))


def parse_lines(lines: Iterable[str]) -> Iterator[Op]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield Op.from_json(json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"line {number}: {exc}") from None
