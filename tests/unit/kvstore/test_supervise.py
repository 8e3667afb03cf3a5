"""``kvstore up``'s supervisor, on a fake clock and fake processes: what it says and when it
restarts."""

from __future__ import annotations

import signal

from kvstore.supervise import CANNOT_START, Supervisor, describe_exit


class FakeNodes:
    def __init__(self) -> None:
        self.dead: dict[int, int] = {}
        self.starts: list[int] = []

    def exited(self) -> dict[int, int]:
        return dict(self.dead)

    def forget(self, node_id: int) -> None:
        self.dead.pop(node_id, None)

    def start(self, node_id: int) -> None:
        self.starts.append(node_id)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def supervised(*, restart: bool = True) -> tuple[Supervisor, FakeNodes, Clock, list[str]]:
    nodes, clock, said = FakeNodes(), Clock(), []
    supervisor = Supervisor(nodes, restart=restart, say=said.append, clock=clock)
    for node in (1, 2, 3):
        supervisor.started(node)
    return supervisor, nodes, clock, said


def test_a_killed_node_is_reported_and_restarted_after_two_seconds() -> None:
    supervisor, nodes, clock, said = supervised()
    nodes.dead[1] = -signal.SIGKILL
    supervisor.check()
    assert said == ["node 1 exited (SIGKILL); restarting in 2 s"]
    clock.now += 1.9
    supervisor.check()
    assert nodes.starts == []
    clock.now += 0.2
    supervisor.check()
    assert nodes.starts == [1] and said[-1] == "node 1 restarted"


def test_a_node_that_keeps_dying_backs_off_and_a_stable_one_starts_over() -> None:
    supervisor, nodes, clock, said = supervised()
    delays = []
    for _ in range(7):
        nodes.dead[2] = 1
        supervisor.check()
        delays.append(supervisor.pending[2].delay_s)
        clock.now += delays[-1]
        supervisor.check()  # restarted; dies again at once
    assert delays == [2, 4, 8, 16, 32, 60, 60]
    clock.now += 31  # up longer than STABLE_S
    nodes.dead[2] = -signal.SIGSEGV
    supervisor.check()
    assert said[-1] == "node 2 exited (SIGSEGV); restarting in 2 s"


def test_no_restart_leaves_a_dead_node_down() -> None:
    supervisor, nodes, clock, said = supervised(restart=False)
    nodes.dead[3] = -signal.SIGKILL
    supervisor.check()
    clock.now += 100
    supervisor.check()
    assert nodes.starts == [] and said == ["node 3 exited (SIGKILL); not restarting"]


def test_a_node_that_cannot_start_stops_the_cluster_instead_of_a_restart_loop() -> None:
    supervisor, nodes, _, said = supervised()
    nodes.dead[1] = CANNOT_START
    supervisor.check()
    assert supervisor.cannot_start == 1 and nodes.starts == [] and said == []


def test_exits_are_described_by_signal_name_or_code() -> None:
    assert describe_exit(-9) == "SIGKILL"
    assert describe_exit(-15) == "SIGTERM"
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(-200) == "signal 200"
