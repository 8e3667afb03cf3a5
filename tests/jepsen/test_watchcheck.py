"""The watch checker catches what it claims to: a lost, repeated, reordered or invented
change in a watcher's events, against a register history."""

from __future__ import annotations

from tests.jepsen.history import Op
from tests.jepsen.watchers import Seen, WatcherLog, check_watches


def history() -> list[Op]:
    return [
        Op(1, call=10, ret=20, op="put", key="k1", value="v1"),
        Op(2, call=30, ret=40, op="put", key="k1", value="v2"),
        Op(3, call=35, ret=None, op="put", key="k2", value="v3", ok=None),
        Op(4, call=50, ret=60, op="cas", key="k1", value="v4", expected="v2"),
        Op(5, call=70, ret=80, op="cas", key="k1", value="v5", expected="v9", ok=False),
    ]


def log(*events: tuple[str, int, str | None]) -> WatcherLog:
    return WatcherLog(0, [Seen(k, r, v) for k, r, v in events])


GOOD = (("k1", 1, "v1"), ("k1", 2, "v2"), ("k2", 3, "v3"), ("k1", 4, "v4"))


def test_a_faithful_watcher_is_valid_and_an_unknown_write_may_be_missing() -> None:
    assert check_watches(history(), [log(*GOOD)], settled=True).verdict == "valid"
    without_unknown = [e for e in GOOD if e[2] != "v3"]
    assert check_watches(history(), [log(*without_unknown)], settled=True).verdict == "valid"


def test_each_planted_fault_is_named() -> None:
    lost = check_watches(history(), [log(*GOOD[:3])], settled=True)
    assert lost.verdict == "invalid" and "k1=v4" in lost.lost[0]
    twice = check_watches(history(), [log(*GOOD, GOOD[1])], settled=True)
    assert twice.duplicates and twice.order
    swapped = check_watches(
        history(), [log(("k1", 2, "v1"), ("k1", 1, "v2"), ("k1", 4, "v4"))], settled=True
    )
    assert swapped.order
    invented = check_watches(history(), [log(*GOOD, ("k1", 9, "v5"))], settled=True)
    assert invented.phantoms == ["watcher 0: k1=v5 was never written"]  # its cas failed
