"""The counter workload's checker catches what it is for: an id handed out twice, a range
of the wrong size, a counter that went back, and ids that went to nobody without an unknown
take to explain them; and passes a clean run, failed and unknown takes included."""

from __future__ import annotations

from tests.jepsen.counters import CounterLog, TakeOp, check_counter


def take(start: int, count: int, outcome: str = "ok", worker: int = 0) -> TakeOp:
    return TakeOp(worker, count, outcome, start, start + count, 0.0, 0.0)


def test_a_clean_run_is_valid() -> None:
    log = CounterLog(
        [
            take(0, 10),
            take(10, 5, worker=1),
            take(0, 7, "fail"),  # refused: took nothing
            take(0, 20, "unknown"),  # applied: [15, 35) went to nobody
            take(35, 1),
            take(0, 3, "unknown"),  # never applied
        ],
        final=36,
    )
    verdict = check_counter(log)
    assert verdict.verdict == "valid", verdict.problems
    assert (verdict.ok, verdict.failed, verdict.unknown, verdict.ids_taken) == (3, 1, 2, 16)


def test_an_id_handed_out_twice_is_an_overlap() -> None:
    verdict = check_counter(CounterLog([take(0, 10), take(9, 5, worker=1)], final=14))
    assert verdict.verdict == "invalid"
    assert any(p.startswith("overlap") for p in verdict.problems)


def test_a_range_of_the_wrong_size_or_a_counter_that_went_back_is_caught() -> None:
    short = TakeOp(0, 10, "ok", 0, 9, 0.0, 0.0)
    assert any(p.startswith("size") for p in check_counter(CounterLog([short])).problems)
    back = check_counter(CounterLog([take(0, 10), take(10, 10)], final=15))
    assert any(p.startswith("lost") for p in back.problems)


def test_ids_that_went_to_nobody_need_unknown_takes_to_explain_them() -> None:
    unexplained = check_counter(CounterLog([take(0, 10), take(15, 5)], final=20))
    assert any(p.startswith("gap") for p in unexplained.problems)
    too_big = CounterLog([take(0, 10), take(0, 4, "unknown"), take(20, 5)], final=25)
    assert any(p.startswith("gap") for p in check_counter(too_big).problems)
    at_the_end = check_counter(CounterLog([take(0, 10)], final=12))
    assert at_the_end.verdict == "invalid"
    explained = CounterLog([take(0, 10), take(0, 2, "unknown")], final=12)
    assert check_counter(explained).verdict == "valid"
