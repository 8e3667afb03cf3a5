"""Hypothesis strategies for commands over a small key space (so keys collide)."""

from __future__ import annotations

from hypothesis import strategies as st

from kvstore.model import (
    Compare,
    CompareOp,
    Delete,
    OpKind,
    Put,
    RequestId,
    Target,
    Txn,
    TxnOp,
)

keys = st.sampled_from([b"a", b"b", b"c", b"k1", b"\x00\xff"])
values = st.binary(max_size=6)
requests = st.builds(RequestId, st.integers(0, 3), st.integers(0, 5))
compares = st.builds(
    Compare, keys, st.sampled_from(Target), st.sampled_from(CompareOp), values, st.integers(0, 6)
)
ops = st.one_of(
    st.builds(TxnOp, st.sampled_from(OpKind), keys, values),
    st.builds(TxnOp, st.just(OpKind.PUT), keys, values, st.integers(1, 2**63 - 1)),  # leased
)
commands = st.one_of(
    st.builds(Put, requests, keys, values),
    st.builds(Delete, requests, keys),
    st.builds(
        Txn,
        requests,
        st.lists(compares, max_size=3).map(tuple),
        st.lists(ops, max_size=3).map(tuple),
        st.lists(ops, max_size=3).map(tuple),
    ),
)
