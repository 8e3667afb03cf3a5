"""Client ids for exactly-once writes (``RequestId.client_id``), for the library and the CLI.

Its own module so that a command-line write need not import the client library.
"""

from __future__ import annotations

import os


def new_client_id() -> int:
    """A random, non-zero client id (zero means "no session"), below 2**63."""
    return (int.from_bytes(os.urandom(8), "big") >> 1) | 1
