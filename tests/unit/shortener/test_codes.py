"""Codes are ids in base 62, one-to-one; URLs and aliases are checked at, just under and
just over their limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from examples.shortener.codes import (
    URL_BYTES_MAX,
    InvalidInputError,
    base62,
    check_alias,
    check_url,
    id_of,
)


@given(st.integers(0, (1 << 63) - 1))
def test_a_code_is_its_id_in_base_62(n: int) -> None:
    code = base62(n)
    assert id_of(code) == n
    assert code.isalnum() and code.isascii()


def test_known_codes() -> None:
    assert [base62(n) for n in (0, 61, 62, 100_000)] == ["0", "Z", "10", "q0U"]
    assert id_of("") is None and id_of("a-b") is None


def test_urls_up_to_the_limit_pass_and_longer_or_odd_ones_do_not() -> None:
    head = "https://example.com/"
    at_limit = head + "a" * (URL_BYTES_MAX - len(head))
    assert check_url(at_limit) == at_limit
    assert check_url(at_limit[:-1]) == at_limit[:-1]
    with pytest.raises(InvalidInputError, match="over 4096"):
        check_url(at_limit + "a")
    with pytest.raises(InvalidInputError, match="over 4096"):
        check_url(head + "é" * (URL_BYTES_MAX // 2))  # bytes, not characters
    for bad in ("", "example.com", "ftp://example.com", "https://", "http://a b", "http://a\n",
                "javascript:alert(1)", None, 42):  # fmt: skip
        with pytest.raises(InvalidInputError):
            check_url(bad)


def test_aliases() -> None:
    assert check_alias("x" * 64) == "x" * 64
    for bad in ("x" * 65, "", "a/b", "a.b", "api", "Metrics", 7):
        with pytest.raises(InvalidInputError):
            check_alias(bad)
