"""``kvstore up``'s watch over its node processes: a node that dies is reported and restarted.

Rules:
- A node that exits without being asked to (a SIGKILL, a crash, a fatal disk error) is
  restarted after a delay: 2 s, doubled each time it dies again within ``STABLE_S`` of its
  last start, at most ``DELAY_S_MAX``; a node that stayed up that long starts over at 2 s.
- Exit code 2 is ``kvstore serve``'s "cannot start" (bad config, port in use, another
  cluster's data directory): restarting cannot help, so ``up`` reports the node's own
  message and stops every node.
- ``--no-restart`` leaves a dead node down (to watch the cluster without it); the others
  keep serving until Ctrl-C.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

DELAY_S_FIRST = 2.0
DELAY_S_MAX = 60.0
STABLE_S = 30.0
CANNOT_START = 2  # kvstore serve's exit code for a node that cannot start at all


class NodeProcesses(Protocol):
    """What the supervisor needs of a cluster's processes (``LocalCluster`` is one)."""

    def exited(self) -> dict[int, int]: ...  # node -> return code, of nodes that exited

    def forget(self, node_id: int) -> None: ...

    def start(self, node_id: int) -> None: ...


def describe_exit(returncode: int) -> str:
    """``SIGKILL`` for a death by signal, ``exit code 1`` otherwise."""
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


@dataclass
class _Restart:
    at: float
    delay_s: float


@dataclass
class Supervisor:
    nodes: NodeProcesses
    restart: bool = True
    say: Callable[[str], None] = print
    clock: Callable[[], float] = time.monotonic
    started_at: dict[int, float] = field(default_factory=dict)
    delays: dict[int, float] = field(default_factory=dict)
    pending: dict[int, _Restart] = field(default_factory=dict)
    cannot_start: int | None = None  # a node that exited with CANNOT_START: stop everything

    def started(self, node_id: int) -> None:
        self.started_at[node_id] = self.clock()

    def check(self) -> None:
        """One round: report deaths, schedule restarts, start the ones that are due."""
        now = self.clock()
        for node_id, code in sorted(self.nodes.exited().items()):
            self.nodes.forget(node_id)
            if code == CANNOT_START:
                self.cannot_start = node_id
                return
            if not self.restart:
                self.say(f"node {node_id} exited ({describe_exit(code)}); not restarting")
                continue
            up_s = now - self.started_at.get(node_id, now)
            previous = self.delays.get(node_id)
            delay = (
                DELAY_S_FIRST
                if previous is None or up_s >= STABLE_S
                else min(previous * 2, DELAY_S_MAX)
            )
            self.delays[node_id] = delay
            self.pending[node_id] = _Restart(now + delay, delay)
            self.say(f"node {node_id} exited ({describe_exit(code)}); restarting in {delay:g} s")
        for node_id, restart in sorted(self.pending.items()):
            if now >= restart.at:
                del self.pending[node_id]
                self.nodes.start(node_id)
                self.started(node_id)
                self.say(f"node {node_id} restarted")
