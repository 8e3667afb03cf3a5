"""The queue workload's checker catches what it is for, each in a hand-made history: an
acknowledged record missing from the log, a record appended twice, a log with a gap or a
record away from the offset it was acknowledged at, a record no consumer was handed, a
checkpoint going back, and a consumer skipping records; and passes a clean run with an
unknown call and redelivery."""

from __future__ import annotations

import copy

from tests.jepsen.queue import Produce, QueueLog, check_queue, partition_of

KEY = "k0"
P = partition_of(KEY)


def clean() -> QueueLog:
    calls = [
        Produce(0, ["w0-1", "w0-2"], [KEY, KEY], "ok", {P: 0}),
        Produce(1, ["w1-1"], [KEY], "ok", {P: 2}),
        Produce(1, ["w1-2"], [KEY], "unknown"),  # never appended: allowed
    ]
    log = {P: [(0, "w0-1"), (1, "w0-2"), (2, "w1-1")]}
    deliveries = [
        [(P, 0, "w0-1"), (P, 1, "w0-2")],  # killed before checkpointing 1
        [(P, 1, "w0-2"), (P, 2, "w1-1")],  # the next owner: from the checkpoint, again
    ]
    return QueueLog(calls, [{P: 1}, {P: 1}, {P: 3}], deliveries, log)


def kinds(log: QueueLog) -> set[str]:
    verdict = check_queue(log)
    return {kind for kind, found in verdict.problems.items() if found}


def test_a_clean_run_is_valid() -> None:
    verdict = check_queue(clean())
    assert verdict.verdict == "valid", verdict.problems
    assert (verdict.produced_ok, verdict.produced_unknown, verdict.records) == (2, 1, 3)


def test_each_fault_is_caught_as_its_kind() -> None:
    lost = clean()
    lost.log[P] = lost.log[P][:2]
    assert "lost" in kinds(lost)

    duplicated = clean()
    duplicated.log[P].append((3, "w0-1"))
    duplicated.deliveries[1].append((P, 3, "w0-1"))
    assert kinds(duplicated) == {"duplicated"}

    gap = clean()
    gap.log[P][2] = (3, "w1-1")
    assert "offsets" in kinds(gap)

    misplaced = clean()
    misplaced.produces[1].offsets = {P: 5}
    assert kinds(misplaced) == {"offsets"}

    undelivered = clean()
    undelivered.deliveries[1] = [(P, 1, "w0-2")]
    assert kinds(undelivered) == {"undelivered"}

    back = clean()
    back.checkpoints.append({P: 2})
    assert kinds(back) == {"checkpoint-back"}

    skipped = copy.deepcopy(clean())
    skipped.log[P].append((3, "w1-2"))
    skipped.produces[2].outcome = "unknown"
    skipped.log[P].append((4, "w1-3"))
    skipped.deliveries[1] += [(P, 4, "w1-3")]  # 3 handed to nobody, jumped over
    assert {"skipped", "undelivered"} <= kinds(skipped)
