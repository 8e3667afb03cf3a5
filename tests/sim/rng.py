"""Independent random streams derived from one seed by name (never with built-in ``hash``)."""

from __future__ import annotations

import hashlib
import random


def sub_rng(seed: int, name: str) -> random.Random:
    digest = hashlib.blake2b(f"{seed}/{name}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))
