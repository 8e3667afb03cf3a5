"""Jepsen-style fault tests against real ``kvstore serve`` processes (see docs/jepsen.md).

``python -m tests.jepsen run --duration 60 --nemesis partition,kill --seed 7`` (what
``make jepsen ARGS=...`` calls) and ``python -m tests.jepsen check history.jsonl``.
"""
