"""Operator state kept in the store: reserved keys that clients may read but not write.

Rules:
- ``DRAINING + <node id>`` exists while the node is draining (``kvstore node drain`` sets
  it before it moves a replica, ``kvstore node undrain`` deletes it). A draining node takes
  no new replica, and the rebalancer moves none onto it; the drain moves its replicas off.
- ``REBALANCE_KEY`` holds ``off`` while the automatic rebalancer is switched off
  (``kvstore node rebalance --auto off``); absent, it runs.
- Kept as keys (as CockroachDB keeps node liveness records in its own ranges): written
  through a shard's log like any key, so every node reads the same state, and it survives
  whatever restarts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

OPERATOR = b"\xff\xfeo/"
DRAINING = OPERATOR + b"draining/"
REBALANCE_KEY = OPERATOR + b"rebalance"
DRAINING_VALUE = b"draining"
REBALANCE_OFF = b"off"


def draining_key(node_id: int) -> bytes:
    return DRAINING + str(node_id).encode()


def after(prefix: bytes) -> bytes:
    """The first key past every key that starts with ``prefix`` (a scan's end)."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def known_key(key: bytes) -> bool:
    node = key[len(DRAINING) :]
    return key == REBALANCE_KEY or (key.startswith(DRAINING) and node.isdigit())


def known_value(key: bytes, value: bytes) -> bool:
    return value == (REBALANCE_OFF if key == REBALANCE_KEY else DRAINING_VALUE)


@dataclass(frozen=True, slots=True)
class OperatorState:
    draining: frozenset[int] = frozenset()
    rebalance: bool = True


def parse(pairs: Iterable[tuple[bytes, bytes]]) -> OperatorState:
    """The state the keys under ``OPERATOR`` say (a key that does not parse says nothing)."""
    draining = set()
    rebalance = True
    for key, value in pairs:
        if key.startswith(DRAINING) and value == DRAINING_VALUE:
            node = key[len(DRAINING) :]
            if node.isdigit():
                draining.add(int(node))
        elif key == REBALANCE_KEY:
            rebalance = value != REBALANCE_OFF
    return OperatorState(frozenset(draining), rebalance)
