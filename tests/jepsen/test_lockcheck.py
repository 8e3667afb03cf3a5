"""The lock workload's checker catches what it is for: two holders at once (the same value
written twice, or a count going back in fencing-token order), a lost increment and a count
nobody wrote; and passes a clean run, fenced and unknown increments included."""

from __future__ import annotations

from tests.jepsen.locks import Increment, LockLog, check_locks


def inc(worker: int, token: int, read: int, outcome: str = "ok") -> Increment:
    return Increment(worker, token, read, read + 1, outcome, 0.0, 0.0)


def test_a_clean_run_is_valid() -> None:
    log = LockLog(
        [
            inc(0, 5, 0),
            inc(1, 9, 1),
            inc(2, 12, 1, "fenced"),
            inc(0, 15, 2, "unknown"),
            inc(1, 20, 3),
        ],
        final=4,
    )
    verdict = check_locks(log)
    assert verdict.verdict == "valid", verdict.problems
    assert (verdict.ok, verdict.fenced, verdict.unknown) == (3, 1, 1)


def test_two_holders_at_once_are_interleaved() -> None:
    same_value = LockLog([inc(0, 5, 0), inc(1, 9, 0)], final=1)
    assert any("both wrote 1" in p for p in check_locks(same_value).problems)
    stale_read = LockLog([inc(0, 5, 0), inc(1, 9, 1), inc(2, 12, 1)], final=2)
    verdict = check_locks(stale_read)
    assert verdict.verdict == "invalid"
    assert any(p.startswith("interleaved") for p in verdict.problems)


def test_a_lost_or_phantom_count_is_caught() -> None:
    lost = check_locks(LockLog([inc(0, 5, 0), inc(1, 9, 1)], final=1))
    assert any(p.startswith("lost") for p in lost.problems)
    phantom = check_locks(LockLog([inc(0, 5, 0)], final=7))
    assert any(p.startswith("phantom") for p in phantom.problems)
