"""Where event streams live in the key space, and the rows no split may cut.

Rules:
- Streams live under ``STREAMS = b"\\xff\\xff"``, after every key a client is likely to use:
  ``t/<topic>`` holds a topic's description; ``s/<topic>/<partition:4>`` is a partition's
  **row**: its head (the row's own key: first retained and next offsets) followed by its
  records, one key each, ``<row><offset:8>`` (big-endian, so offset order is key order);
  ``g/<group>/<topic>/<partition:4>/`` is a consumer group's row for a partition
  (``own``: the owner's claim, ``ckpt``: the checkpoint); ``m/<group>/<topic>/<member>``
  is a member's status (on the member's lease).
- A **row** is never split (as CockroachDB never splits a SQL row between ranges): a
  partition's log lives in one shard, so its leader alone assigns offsets, and a group's
  claim and checkpoint sit in one shard, so one Txn compares one and writes the other. A
  split key inside a row is refused; the automatic split point moves to the row's start.
- Clients write only group rows and members (through KV, as ``kvstore.streams.processor``
  does);
  topic descriptions and partition rows are written by the Streams service's commands.
- Names (topics, groups) are 1..249 of ``[A-Za-z0-9._-]``, as Kafka's topic names: no
  ``/``, so a key parses one way.
"""

from __future__ import annotations

import re

STREAMS = b"\xff\xff"
TOPICS = STREAMS + b"t/"
PARTITIONS = STREAMS + b"s/"
GROUPS = STREAMS + b"g/"
MEMBERS = STREAMS + b"m/"
NAME_BYTES_MAX = 249
PARTITIONS_MAX = 1024
_NAME = re.compile(rb"[A-Za-z0-9._-]{1,%d}" % NAME_BYTES_MAX)
_PARTITION_BYTES = 4
_OFFSET_BYTES = 8


def valid_name(name: bytes) -> bool:
    return _NAME.fullmatch(name) is not None


def topic_key(topic: bytes) -> bytes:
    return TOPICS + topic


def partition_row(topic: bytes, partition: int) -> bytes:
    """The partition's row: also the key of its head."""
    return PARTITIONS + topic + b"/" + partition.to_bytes(_PARTITION_BYTES, "big")


def record_key(row: bytes, offset: int) -> bytes:
    return row + offset.to_bytes(_OFFSET_BYTES, "big")


def record_offset(row: bytes, key: bytes) -> int:
    return int.from_bytes(key[len(row) :], "big")


def group_row(group: bytes, topic: bytes, partition: int) -> bytes:
    return group_prefix(group, topic) + partition.to_bytes(_PARTITION_BYTES, "big") + b"/"


def group_prefix(group: bytes, topic: bytes) -> bytes:
    """Every partition row of ``group`` on ``topic``."""
    return GROUPS + group + b"/" + topic + b"/"


def owner_key(row: bytes) -> bytes:
    return row + b"own"


def checkpoint_key(row: bytes) -> bytes:
    return row + b"ckpt"


def partition_of_group_row(prefix: bytes, key: bytes) -> int:
    return int.from_bytes(key[len(prefix) : len(prefix) + _PARTITION_BYTES], "big")


def members_prefix(group: bytes, topic: bytes) -> bytes:
    return MEMBERS + group + b"/" + topic + b"/"


def row_of(key: bytes) -> bytes | None:
    """The row ``key`` belongs to (None: none, the key may be split anywhere)."""
    if key.startswith(PARTITIONS):
        return _row_after(key, PARTITIONS, names=1, tail=b"")
    if key.startswith(GROUPS):
        return _row_after(key, GROUPS, names=2, tail=b"/")
    return None


def split_safe(key: bytes) -> bool:
    """A split may happen at ``key``: it is not strictly inside a row."""
    row = row_of(key)
    return row is None or row == key


def _row_after(key: bytes, prefix: bytes, *, names: int, tail: bytes) -> bytes | None:
    at = len(prefix)
    for _ in range(names):
        slash = key.find(b"/", at)
        if slash < 0:
            return None  # not a well-formed row key: a row of its own
        at = slash + 1
    end = at + _PARTITION_BYTES + len(tail)
    return key[:end] if len(key) >= end else None
