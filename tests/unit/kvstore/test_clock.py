"""The node clock's skew controls: a rate applies from the instant it is read, never as a jump;
an offset change is a jump by the difference; a bad control file changes nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kvstore.runtime import clock as clock_module
from kvstore.runtime.clock import Clock, TickSource


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 64.0  # binary-exact steps keep tick arithmetic exact

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def mono(monkeypatch: pytest.MonkeyPatch) -> FakeMonotonic:
    fake = FakeMonotonic()
    monkeypatch.setattr(clock_module.time, "monotonic", fake)
    return fake


@pytest.fixture
def control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "clock.json"
    monkeypatch.setenv("KVSTORE_CLOCK_FILE", str(path))
    return path


def write(path: Path, **skew: float) -> None:
    path.write_text(json.dumps(skew))
    version = path.stat().st_mtime_ns
    os.utime(path, ns=(version + 1_000_000, version + 1_000_000))  # a new version each write


def test_rate_changes_are_continuous(control: Path, mono: FakeMonotonic) -> None:
    clock = Clock()
    mono.now += 1.0
    assert clock.now_ms() == pytest.approx(1000.0)
    write(control, rate=2.0)
    mono.now += 0.1
    at_change = clock.now_ms()  # read here: 1100 ms, then twice as fast
    assert at_change == pytest.approx(1100.0)
    mono.now += 1.0
    assert clock.now_ms() == pytest.approx(3100.0)


def test_offset_changes_jump_by_the_difference(control: Path, mono: FakeMonotonic) -> None:
    clock = Clock()
    ticks = TickSource(clock, 10)
    write(control, rate=1.0, offset_ms=500.0)
    mono.now += 0.125
    assert clock.now_ms() == pytest.approx(625.0)
    assert ticks.due() == 62  # the jump delivers 50 ticks that never happened


def test_an_unreadable_control_file_keeps_the_current_skew(
    control: Path, mono: FakeMonotonic
) -> None:
    clock = Clock()
    control.write_text("{half a fi")
    mono.now += 1.0
    assert clock.now_ms() == pytest.approx(1000.0)
    write(control, rate=-3.0)
    mono.now += 1.0
    assert clock.now_ms() == pytest.approx(2000.0)
