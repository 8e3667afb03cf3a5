"""Any argv and environment: the command line answers with exit 0, 1 or 2 and never a
traceback; every exit 2 is one ``kvstore: ...`` line. In-process, against a port nothing
listens on, with a short timeout (``up``, ``serve`` and ``bench`` start processes or
servers: their arguments are tested in tests/system/test_serve.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cli.harness import DEAD, run

COMMANDS = (
    ("get",),
    ("put",),
    ("del",),
    ("scan",),
    ("txn",),
    ("status",),
    ("shards",),
    ("transfer-leader",),
    ("split",),
    ("merge",),
    ("placement", "set"),
    ("placement", "plan"),
    ("config", "check"),
    ("lease", "grant"),
    ("lease", "keep-alive"),
    ("lease", "revoke"),
    ("lease", "list"),
    ("topic", "create"),
    ("topic", "list"),
    ("topic", "describe"),
    ("topic", "delete"),
    ("produce",),
    ("consume",),
    ("group", "describe"),
    ("lock",),
    ("elect",),
    ("watch",),
)
FLAGS = (
    "--limit", "--timeout", "--prefix", "--start", "--end", "--stale", "--max-staleness-ms",
    "-o", "--output", "--if", "--then", "--else", "--file", "--output-file", "--dc",
    "--leader-dc", "--default", "--at", "--endpoints", "-", "--", "-h", "--ttl", "--id",
    "--lease", "--listen",
)  # fmt: skip
SPECIAL = (
    "", " ", "nan", "inf", "-inf", "-0", "1e309", "0x10", "²", "json", "table", "raw",
    "value(k) = v", "version(k) > 0", "mod(k) < 18446744073709551616", "put k v", "get k",
    "del k", "127.0.0.1:1", "nonsense", "host:99999", ":", "a,b", "/", "/nonexistent",
    "dc1", "-1", "4294967296", "9223372036854775808",
)  # fmt: skip
# What argv can hold: any text, and bytes that are not UTF-8 arrive as lone surrogates.
ARGV_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",)) | st.sampled_from(["\udcff", "\udc80"]),
    max_size=12,
).filter(lambda s: "\x00" not in s)  # argv cannot hold NUL
TOKEN = (
    st.sampled_from(FLAGS)
    | st.sampled_from(SPECIAL)
    | st.integers(-(2**70), 2**70).map(str)
    | ARGV_TEXT
)
ENV = st.fixed_dictionaries(
    {},
    optional={
        "KVSTORE_NODE_ID": ARGV_TEXT,
        "KVSTORE_ENDPOINTS": st.sampled_from([DEAD, "", "nonsense", f"{DEAD},127.0.0.1:2"]),
        "KVSTORE_DC": st.sampled_from(["", "dc1", "mars"]),
    },
)


@settings(max_examples=300, deadline=None)
@given(command=st.sampled_from(COMMANDS), tokens=st.lists(TOKEN, max_size=6), env=ENV)
def test_any_argv_exits_0_1_or_2_without_a_traceback(
    command: tuple[str, ...], tokens: list[str], env: dict[str, str]
) -> None:
    # Last, so they win over any drawn: a dead endpoint answers at once, and quickly.
    ran = run(*command, *tokens, "--endpoints", DEAD, "--timeout", "0.2", env=env, stdin=b"")
    assert ran.code in (0, 1, 2), ran
    assert "Traceback" not in ran.err
    if ran.code == 2:
        assert ran.err.startswith("kvstore: ") and ran.err.count("\n") == 1, ran


@settings(max_examples=100, deadline=None)
@given(command=st.sampled_from(COMMANDS), tokens=st.lists(TOKEN, max_size=6), env=ENV)
def test_any_endpoints_and_timeout_flags_too(
    command: tuple[str, ...], tokens: list[str], env: dict[str, str]
) -> None:
    """The drawn tokens decide --endpoints and --timeout here (bounded: a drawn timeout
    over 2 s is replaced, and so is an endpoint that could be a real host)."""
    tokens = [t if _harmless(t) else "nonsense" for t in tokens]
    ran = run(
        *command, "--timeout", "0.2", *tokens, env={**env, "KVSTORE_ENDPOINTS": DEAD}, stdin=b""
    )
    assert ran.code in (0, 1, 2), ran
    assert "Traceback" not in ran.err
    if ran.code == 2:
        assert ran.err.startswith("kvstore: ") and ran.err.count("\n") == 1, ran


def _harmless(token: str) -> bool:
    """Not a timeout that would make the run slow, nor an address other than loopback."""
    try:
        if float(token) > 2:
            return False
    except ValueError:
        pass
    host = token.rpartition(":")[0]
    return not host or host.startswith("127.") or not any(c.isalpha() for c in host)
