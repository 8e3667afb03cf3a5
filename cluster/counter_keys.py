"""Where counters live in the key space, and what a counter's name and take may be.

Rules:
- A counter is one key, ``COUNTERS + <name>``, whose value is the next id it hands out, in
  decimal (so ``kvstore get`` shows it); absent, it is 0. Counters sort after every key a
  client is likely to use and before the event streams (``cluster.stream_keys``).
- Only the ``Take`` command writes a counter (the Counters service proposes it); KV writes
  to a counter's key are refused, so no put can move a counter back.
- A name is 1..249 bytes of ``[A-Za-z0-9._/-]`` (``/`` groups names, as in
  ``shortener/ids``); a take is 1..``TAKE_COUNT_MAX`` ids; a counter never passes
  ``VALUE_MAX`` (ids fit a signed 64-bit integer in every language).
"""

from __future__ import annotations

import re

COUNTERS = b"\xff\xfec/"
NAME_BYTES_MAX = 249
TAKE_COUNT_MAX = 1_000_000_000
VALUE_MAX = (1 << 63) - 1
_NAME = re.compile(rb"[A-Za-z0-9._/-]{1,%d}" % NAME_BYTES_MAX)


def valid_name(name: bytes) -> bool:
    return _NAME.fullmatch(name) is not None


def counter_key(name: bytes) -> bytes:
    return COUNTERS + name


def encode_value(value: int) -> bytes:
    return b"%d" % value


def decode_value(raw: bytes | None) -> int | None:
    """The counter's next id (0 for a counter never taken from; None if ``raw`` is not
    one, which only a write around the Counters service could have made)."""
    if raw is None:
        return 0
    if not raw.isdigit() or len(raw) > 19:
        return None
    return int(raw)
