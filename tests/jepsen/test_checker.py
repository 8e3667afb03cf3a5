"""The linearizability checker rejects what it must and accepts what it must."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.jepsen.history import CAS_MISMATCH, Op, parse_lines
from tests.jepsen.linearizability import check_history
from tests.jepsen.staleness import BoundedRead, check_bounded_reads
from tests.jepsen.synthetic import generate


def put(c: int, call: int, ret: int | None, v: str, key: str = "k") -> Op:
    return Op(c, call, ret, "put", key, value=v, ok=None if ret is None else True)


def get(c: int, call: int, ret: int | None, out: str | None, key: str = "k") -> Op:
    return Op(c, call, ret, "get", key, output=out, ok=None if ret is None else True)


def cas(c: int, call: int, ret: int | None, exp: str, v: str, ok: bool, key: str = "k") -> Op:  # noqa: PLR0917
    error = None if ok or ret is None else CAS_MISMATCH
    known = None if ret is None else ok
    return Op(c, call, ret, "cas", key, value=v, expected=exp, ok=known, error=error)


def verdict(*ops: Op) -> str:
    return check_history(ops).verdict


def test_sequential_register_is_valid() -> None:
    assert verdict(put(1, 0, 10, "a"), get(1, 20, 30, "a"), put(2, 40, 50, "b")) == "valid"


def test_stale_read_is_invalid() -> None:
    # b is acknowledged before the read starts, yet the read returns a.
    assert verdict(put(1, 0, 10, "a"), put(1, 20, 30, "b"), get(2, 40, 50, "a")) == "invalid"


def test_concurrent_read_may_see_either_value() -> None:
    history = (put(1, 0, 10, "a"), put(1, 20, 60, "b"), get(2, 30, 40, "a"), get(3, 30, 40, "b"))
    assert verdict(*history) == "valid"


def test_lost_write_is_invalid() -> None:
    # b acknowledged, then every later read sees the older a.
    history = (put(1, 0, 10, "a"), put(2, 20, 30, "b"), get(3, 40, 50, "a"), get(3, 60, 70, "a"))
    assert verdict(*history) == "invalid"


def test_read_of_a_value_never_written_is_invalid() -> None:
    assert verdict(put(1, 0, 10, "a"), get(2, 20, 30, "zzz")) == "invalid"


def test_unknown_write_may_appear_late() -> None:
    history = (put(1, 0, 10, "a"), put(2, 20, None, "b"), get(3, 500, 510, "b"))
    assert verdict(*history) == "valid"


def test_unknown_write_may_never_appear() -> None:
    history = (put(1, 0, 10, "a"), put(2, 20, None, "b"), get(3, 500, 510, "a"))
    assert verdict(*history) == "valid"


def test_flip_flop_after_unknown_write_is_invalid() -> None:
    # The unknown b may apply once; seeing b, then a again, then b needs it twice.
    history = (
        put(1, 0, 10, "a"),
        put(2, 20, None, "b"),
        get(3, 30, 40, "b"),
        get(3, 50, 60, "a"),
    )
    assert verdict(*history) == "invalid"


def test_cas_that_succeeded_on_a_mismatch_is_invalid() -> None:
    history = (put(1, 0, 10, "a"), cas(2, 20, 30, "x", "b", True), get(3, 40, 50, "b"))
    assert verdict(*history) == "invalid"


def test_failed_cas_on_a_match_is_invalid() -> None:
    assert verdict(put(1, 0, 10, "a"), cas(2, 20, 30, "a", "b", False)) == "invalid"


def test_a_refused_cas_asserts_nothing() -> None:
    refused = Op(2, 20, 30, "cas", "k", value="b", expected="a", ok=False, error="UNAVAILABLE")
    assert verdict(put(1, 0, 10, "a"), refused, get(3, 40, 50, "a")) == "valid"


def test_cas_chain_is_valid() -> None:
    history = (
        put(1, 0, 10, "a"),
        cas(2, 20, 30, "a", "b", True),
        cas(3, 25, 35, "a", "c", False),
        get(1, 40, 50, "b"),
    )
    assert verdict(*history) == "valid"


def test_keys_are_checked_independently() -> None:
    history = (
        put(1, 0, 10, "a", key="x"),
        get(2, 20, 30, "a", key="y"),  # y was never written: invalid on y alone
    )
    result = check_history(history)
    assert result.verdict == "invalid"
    assert [f.key for f in result.failures] == ["y"]


def test_budget_exhaustion_is_unknown_not_valid() -> None:
    # Many concurrent unknown writes and a read nobody wrote: the search needs many steps.
    ops = [put(c, 0, None, f"v{c}") for c in range(14)] + [get(99, 10, 20, "nobody")]
    assert check_history(ops, steps_per_key_max=50).verdict == "unknown"


def test_counterexample_names_the_stuck_operation() -> None:
    result = check_history((put(1, 0, 10, "a"), put(1, 20, 30, "b"), get(2, 40, 50, "a")))
    failure = result.failures[0]
    assert failure.stuck_on is not None and failure.stuck_on.op == "get"


def test_parses_the_published_line_shape() -> None:
    line = (
        '{"client": 3, "call": 5, "return": null, "op": "cas", "key": "k17",'
        ' "value": "v42", "expected": "v41", "output": null, "ok": false}'
    )
    (op,) = parse_lines([line])
    assert op.unknown and op.expected == "v41" and op.key == "k17"
    assert Op.from_json(__import__("json").loads(op.to_json())) == op


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 8))
def test_generated_atomic_histories_are_valid(seed: int, keys: int) -> None:
    history = generate(random.Random(seed), ops=150, keys=keys, clients=6)
    assert check_history(history).verdict == "valid"


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32))
def test_a_read_of_an_unwritten_value_is_always_caught(seed: int) -> None:
    rng = random.Random(seed)
    history = generate(rng, ops=150, keys=3, clients=6)
    reads = [i for i, op in enumerate(history) if op.op == "get" and not op.unknown]
    victim = history[rng.choice(reads)]
    history[history.index(victim)] = Op(
        victim.client, victim.call, victim.ret, "get", victim.key, output="never-written"
    )
    assert check_history(history).verdict == "invalid"


# ---------------------------------------------------------------------- bounded staleness


def _w(op: str, value: str | None, call_ms: int, ret_ms: int | None, ok: bool = True) -> Op:
    ret = None if ret_ms is None else ret_ms * 1_000_000
    return Op(1, call_ms * 1_000_000, ret, op, "k", value, None, None, None if ret is None else ok)


def _r(output: str | None, call_ms: int, bound_ms: int) -> BoundedRead:
    return BoundedRead(
        2, call_ms * 1_000_000, (call_ms + 1) * 1_000_000, "k", output, bound_ms, "dc2"
    )


def test_a_read_within_its_bound_is_valid() -> None:
    history = [_w("put", "v1", 0, 10), _w("put", "v2", 20, 30)]
    # v2 was acknowledged at 30 ms; a read at 100 ms with a 100 ms bound may still show v1.
    assert check_bounded_reads(history, [_r("v1", 100, 100), _r("v2", 100, 0)]).verdict == "valid"


def test_a_read_staler_than_its_bound_is_caught() -> None:
    history = [_w("put", "v1", 0, 10), _w("put", "v2", 20, 30)]
    verdict = check_bounded_reads(history, [_r("v1", 100, 50)])
    assert verdict.verdict == "invalid" and "beyond its 50 ms bound" in verdict.violations[0]


def test_absent_reads_phantoms_and_future_values_are_caught() -> None:
    history = [_w("put", "v1", 0, 10), _w("cas", "v9", 12, 14, ok=False), _w("put", "v3", 500, 510)]
    assert check_bounded_reads(history, [_r(None, 100, 50)]).verdict == "invalid"
    assert check_bounded_reads(history, [_r(None, 100, 95)]).verdict == "valid"
    assert check_bounded_reads(history, [_r("v9", 100, 1000)]).verdict == "invalid"  # refused
    assert check_bounded_reads(history, [_r("v3", 100, 1000)]).verdict == "invalid"  # future
    deleted = [*history, _w("delete", None, 20, 30)]
    assert check_bounded_reads(deleted, [_r(None, 100, 50)]).verdict == "valid"


def test_a_write_with_an_unknown_outcome_orders_nothing() -> None:
    history = [_w("put", "v1", 0, None), _w("put", "v2", 20, 30)]
    assert check_bounded_reads(history, [_r("v1", 1000, 1)]).verdict == "valid"
