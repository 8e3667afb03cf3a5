"""Per-key linearizability of a register history (Wing & Gong's search, Lowe's memoisation).

P-compositionality: a history is linearizable iff each key's sub-history is, so each key is
searched alone. The search walks call/return events in time order, tries to linearize a
pending call, and backtracks when it meets the return of an operation it has not linearized
(Porcupine's algorithm); a cache of (linearized set, register value) prunes states already
explored.

Unknown outcomes (``return`` and ``ok`` null) may take effect at any time after their call,
or never: their return sits at +infinity, and the search succeeds once every operation with
a known return is linearized. A get whose outcome is unknown constrains nothing and is dropped; so
is every operation with ``ok: false`` (nothing was applied), except a cas whose ``error`` is
``cas-mismatch``: that one asserts the value differed from ``expected`` at its
linearization point.

Verdicts: ``valid``, ``invalid``, or ``unknown`` when a key's search exceeds its budget
(callers count ``unknown`` as a failure).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from tests.jepsen.history import CAS_MISMATCH, Op

INFINITY = 1 << 62
# A key with many operations of unknown outcome (a run with kills and partitions: one key
# had 170 operations, 18 unknown) can need ~20M steps (about 7 s); 2M left such a run
# "unknown" for want of budget. Still a bound: a pathological key ends "unknown", never hangs.
STEPS_PER_KEY_MAX = 50_000_000
ABSENT = None


@dataclass(slots=True)
class _Entry:
    op_index: int
    is_call: bool
    time: int
    match: _Entry | None = None  # the call's return entry, or the return's call entry
    prev: _Entry | None = None
    next: _Entry | None = None


@dataclass
class KeyVerdict:
    key: str
    verdict: str  # "valid" | "invalid" | "unknown"
    ops: int
    steps: int
    stuck_on: Op | None = None  # invalid: the op whose return no linearization reached
    linearized_prefix: list[Op] = field(default_factory=list)


@dataclass
class Verdict:
    verdict: str
    keys: int
    ops: int
    failures: list[KeyVerdict]

    @property
    def valid(self) -> bool:
        return self.verdict == "valid"


def step(state: str | None, op: Op) -> tuple[bool, str | None]:
    """The register model: may ``op`` take effect in ``state``, and what state follows."""
    if op.op == "get":
        return op.output == state, state
    if op.op == "put":
        return True, op.value
    if op.op == "delete":
        return True, ABSENT
    # cas
    if op.ok is False:  # a cas-mismatch (other failures are not searched)
        return state != op.expected, state
    if state == op.expected:
        return True, op.value
    return False, state


def relevant(op: Op) -> bool:
    """Whether ``op`` constrains the register's history at all."""
    if op.unknown:
        return op.op != "get"
    return op.ok is True or (op.op == "cas" and op.error == CAS_MISMATCH)


def check_history(ops: Iterable[Op], *, steps_per_key_max: int = STEPS_PER_KEY_MAX) -> Verdict:
    by_key: dict[str, list[Op]] = defaultdict(list)
    total = 0
    for op in ops:
        total += 1
        if relevant(op):
            by_key[op.key].append(op)
    failures: list[KeyVerdict] = []
    for key in sorted(by_key):
        result = check_key(key, by_key[key], steps_max=steps_per_key_max)
        if result.verdict != "valid":
            failures.append(result)
    if any(f.verdict == "invalid" for f in failures):
        verdict = "invalid"
    elif failures:
        verdict = "unknown"
    else:
        verdict = "valid"
    return Verdict(verdict, len(by_key), total, failures)


def check_key(key: str, ops: list[Op], *, steps_max: int = STEPS_PER_KEY_MAX) -> KeyVerdict:
    head = _build_list(ops)
    pending_known = sum(1 for op in ops if not op.unknown)
    state: str | None = ABSENT
    linearized = 0
    cache: set[tuple[int, str | None]] = set()
    stack: list[tuple[_Entry, str | None]] = []
    deepest: list[int] = []
    stuck: Op | None = None
    steps = 0
    entry = head.next
    while pending_known > 0:
        steps += 1
        if steps > steps_max:
            return KeyVerdict(key, "unknown", len(ops), steps)
        assert entry is not None
        op = ops[entry.op_index]
        if entry.is_call:
            ok, new_state = step(state, op)
            if ok:
                marked = linearized | (1 << entry.op_index)
                if (marked, new_state) not in cache:
                    cache.add((marked, new_state))
                    stack.append((entry, state))
                    state, linearized = new_state, marked
                    if not op.unknown:
                        pending_known -= 1
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
            continue
        # A return whose call is not linearized: undo the latest choice and try the next.
        if len(stack) >= len(deepest):
            deepest = [e.op_index for e, _ in stack]
            stuck = op
        if not stack:
            prefix = [ops[i] for i in deepest]
            return KeyVerdict(key, "invalid", len(ops), steps, stuck, prefix)
        top, state = stack.pop()
        linearized &= ~(1 << top.op_index)
        if not ops[top.op_index].unknown:
            pending_known += 1
        _unlift(top)
        entry = top.next
    return KeyVerdict(key, "valid", len(ops), steps)


def _build_list(ops: list[Op]) -> _Entry:
    events: list[_Entry] = []
    for index, op in enumerate(ops):
        call = _Entry(index, True, op.call)
        ret = _Entry(index, False, INFINITY if op.ret is None else op.ret)
        call.match, ret.match = ret, call
        events += (call, ret)
    # Calls before returns at equal times: touching operations count as concurrent.
    events.sort(key=lambda e: (e.time, not e.is_call))
    head = _Entry(-1, True, -1)
    previous = head
    for event in events:
        previous.next, event.prev = event, previous
        previous = event
    return head


def _lift(call: _Entry) -> None:
    """Take a call and its return out of the list."""
    assert call.prev is not None and call.match is not None
    call.prev.next = call.next
    if call.next is not None:
        call.next.prev = call.prev
    ret = call.match
    assert ret.prev is not None
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(call: _Entry) -> None:
    """Put a lifted call and its return back where they were (reverse order of _lift)."""
    ret = call.match
    assert ret is not None and ret.prev is not None and call.prev is not None
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    call.prev.next = call
    if call.next is not None:
        call.next.prev = call
