"""Command handlers for the golden scripts: one function per command, over ``ManualCluster``.

Commands (node names are n1, n2, ...; ``all`` means every node):
  cluster size=3 seed=0 [config_key=value ...]   start a fresh cluster
  tick n1 [ticks=1] | tick all ticks=10           advance clocks
  campaign n1                                     start an election now
  propose n1 value                                propose one command
  flush n1 [count=N] | flush all                  make pending writes durable, in order
  deliver [to=n2] [from=n1] [type=Accept]         deliver matching in-flight messages
  drop [to=n2] [from=n1] [type=Accepted]          lose matching in-flight messages
  crash n1 / restart n1                           lose unsynced writes / recover from disk
  stabilize                                       flush and deliver until quiet
  state                                           role, promise, chosen prefix, applied values
  entries n1                                      one replica's promise and log entries
  net                                             in-flight messages
Every command prints what happened: writes, applies, role changes, deliveries, core log lines.
"""

from __future__ import annotations

import shlex

from paxos import Message, NodeId
from tests.harness import ManualCluster, _value, render_message


class Env:
    def __init__(self) -> None:
        self.cluster: ManualCluster | None = None

    def handle(self, line: str) -> str:
        words = shlex.split(line)
        name, args = words[0], words[1:]
        positional = [a for a in args if "=" not in a]
        options = dict(a.split("=", 1) for a in args if "=" in a)
        handler = getattr(self, f"cmd_{name}", None)
        assert handler is not None, f"unknown command {name!r}"
        result: str | None = handler(positional, options)
        c = self.cluster
        lines = c.take_events() if c is not None else []
        if result:
            lines.append(result)
        return "\n".join(lines)

    @property
    def c(self) -> ManualCluster:
        assert self.cluster is not None, "run `cluster` first"
        return self.cluster

    def _nodes(self, names: list[str]) -> list[NodeId]:
        if names == ["all"]:
            return [v for v in self.c.voters if self.c.up(v)]
        return [NodeId(int(n.removeprefix("n"))) for n in names]

    def cmd_cluster(self, _: list[str], opts: dict[str, str]) -> str:
        size = int(opts.pop("size", "3"))
        seed = int(opts.pop("seed", "0"))
        config = {k: int(v) for k, v in opts.items()}
        self.cluster = ManualCluster(size, seed=seed, **config)
        self.c.take_events()
        return f"{size} replicas"

    def cmd_tick(self, names: list[str], opts: dict[str, str]) -> None:
        for v in self._nodes(names):
            self.c.tick(v, int(opts.get("ticks", "1")))

    def cmd_campaign(self, names: list[str], _: dict[str, str]) -> None:
        for v in self._nodes(names):
            self.c.replica(v).campaign()
            self.c.drain(v)

    def cmd_propose(self, names: list[str], _: dict[str, str]) -> str:
        v = self._nodes(names[:1])[0]
        outcome = self.c.replica(v).propose(names[1].encode())
        self.c.drain(v)
        return f"n{v} propose {names[1]}: {outcome}"

    def cmd_flush(self, names: list[str], opts: dict[str, str]) -> None:
        count = int(opts["count"]) if "count" in opts else None
        for v in self._nodes(names):
            self.c.flush(v, count)

    def _match(self, opts: dict[str, str]) -> object:
        def match(m: Message) -> bool:
            return (
                ("to" not in opts or f"n{m.dst}" == opts["to"])
                and ("from" not in opts or f"n{m.src}" == opts["from"])
                and ("type" not in opts or type(m).__name__ == opts["type"])
            )

        return match

    def cmd_deliver(self, _: list[str], opts: dict[str, str]) -> None:
        self.c.deliver(self._match(opts))  # type: ignore[arg-type]

    def cmd_drop(self, _: list[str], opts: dict[str, str]) -> str:
        return f"dropped {self.c.drop(self._match(opts))}"  # type: ignore[arg-type]

    def cmd_crash(self, names: list[str], _: dict[str, str]) -> str:
        v = self._nodes(names)[0]
        return f"n{v} crashed, {self.c.crash(v)} unsynced writes lost"

    def cmd_restart(self, names: list[str], _: dict[str, str]) -> None:
        for v in self._nodes(names):
            self.c.restart(v)

    def cmd_stabilize(self, _: list[str], __: dict[str, str]) -> None:
        self.c.stabilize()

    def cmd_state(self, _: list[str], __: dict[str, str]) -> str:
        lines = []
        for v in self.c.voters:
            if not self.c.up(v):
                lines.append(f"n{v}: down")
                continue
            r = self.c.replica(v)
            applied = " ".join(_value(x) for x in self.c.applied[v])
            lines.append(
                f"n{v}: {r.role.value} promised={r.promised} chosen_through={r.chosen_through}"
                f" applied=[{applied}]"
            )
        violations = [str(x) for x in self.c.checker.violations]
        return "\n".join(lines + violations)

    def cmd_entries(self, names: list[str], _: dict[str, str]) -> str:
        r = self.c.replica(self._nodes(names)[0])
        lines = [f"promised={r.promised} chosen_through={r.chosen_through}"]
        for slot in range(r.snapshot_slot + 1, r.chosen_through + 64):
            entry = r.log_entry(slot)  # type: ignore[arg-type]
            if entry is not None:
                lines.append(f"slot {slot}: {_value(entry.value)} accepted at {entry.ballot}")
        return "\n".join(lines)

    def cmd_net(self, _: list[str], __: dict[str, str]) -> str:
        return "\n".join(render_message(m) for m in self.c.net) or "(empty)"
