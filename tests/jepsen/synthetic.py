"""Synthetic register histories: concurrent clients over a true atomic register.

Used to measure the checker (``python -m tests.jepsen check --synthetic 10000``) and by its
property tests: a history generated here is linearizable by construction, and stays so with
unknown outcomes, so any single corrupted read must make it invalid unless it is explained.
"""

from __future__ import annotations

import heapq
import random

from tests.jepsen.history import CAS_MISMATCH, Op


def generate(
    rng: random.Random,
    *,
    ops: int,
    keys: int,
    clients: int = 10,
    unknown_rate: float = 0.02,
) -> list[Op]:
    """``ops`` operations by ``clients`` concurrent clients; each takes effect at a random
    instant inside its [call, return] window, applied in that order to real registers."""
    state: dict[str, str | None] = {}
    written: dict[str, list[str]] = {}
    pending: list[tuple[int, int, int, int]] = []  # (effect, call, return, client)
    free_at = dict.fromkeys(range(clients), 0)
    counter = 0
    for _ in range(ops):
        client = min(free_at, key=lambda c: (free_at[c], c))
        call = free_at[client] + rng.randint(0, 2_000)
        ret = call + rng.randint(100, 20_000)
        effect = rng.randint(call, ret)
        free_at[client] = ret
        heapq.heappush(pending, (effect, call, ret, client))
    history: list[Op] = []
    next_client = clients
    renamed: dict[int, int] = {}
    while pending:
        effect, call, ret, client = heapq.heappop(pending)
        key = f"k{rng.randrange(keys)}"
        current = state.get(key)
        kind = rng.choices(("get", "put", "cas", "delete"), (45, 30, 20, 5))[0]
        name = renamed.get(client, client)
        if kind == "get":
            history.append(Op(name, call, ret, "get", key, output=current))
            continue
        counter += 1
        value = f"v{counter}"
        if kind == "put":
            op = Op(name, call, ret, "put", key, value=value)
            state[key] = value
        elif kind == "delete":
            op = Op(name, call, ret, "delete", key)
            state[key] = None
        else:
            seen = written.get(key) or ["v0"]
            expected = rng.choice(seen[-3:])
            ok = current == expected
            error = None if ok else CAS_MISMATCH
            op = Op(name, call, ret, "cas", key, value=value, expected=expected, ok=ok, error=error)
            if ok:
                state[key] = value
        written.setdefault(key, []).append(value)
        if rng.random() < unknown_rate:
            # The client never learns the outcome; Jepsen gives it a new identity.
            op = Op(name, call, None, op.op, key, op.value, op.expected, None, None)  # no error
            renamed[client] = next_client
            next_client += 1
        history.append(op)
    history.sort(key=lambda o: o.call)
    return history
