"""Short codes, aliases and the URLs they point to: what is valid, and how ids become codes.

Rules:
- A minted code is its id in base 62 (``0-9a-zA-Z``): id 100,000 is ``q0U``. Ids come from
  ranges no other server gets, so codes never repeat.
- An alias is 1..64 of ``[A-Za-z0-9_-]`` and not a word the service routes (``api``, …).
  Aliases and minted codes share one key space; whichever is stored first owns the code.
- A URL is an absolute ``http``/``https`` URL with a host, at most ``URL_BYTES_MAX`` bytes of
  UTF-8, with no whitespace or control characters.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
URL_BYTES_MAX = 4096
ALIAS_CHARS_MAX = 64
RESERVED = frozenset({"api", "healthz", "metrics", "static", "favicon.ico", "robots.txt"})
CODE = re.compile(rf"[A-Za-z0-9_-]{{1,{ALIAS_CHARS_MAX}}}")  # every code, minted or chosen
_UNSAFE = re.compile(r"[\x00-\x20\x7f-\x9f\s]")  # controls (C0, C1) and any whitespace
_DIGIT = {c: i for i, c in enumerate(ALPHABET)}


class InvalidInputError(ValueError):
    """A request the service refuses as malformed (400, with this message)."""


def base62(n: int) -> str:
    if n < 0:
        raise ValueError(f"ids are not negative: {n}")
    digits = []
    while True:
        n, digit = divmod(n, 62)
        digits.append(ALPHABET[digit])
        if n == 0:
            return "".join(reversed(digits))


def id_of(code: str) -> int | None:
    """The id a minted code stands for (None if ``code`` is not base 62)."""
    n = 0
    for c in code:
        digit = _DIGIT.get(c)
        if digit is None:
            return None
        n = n * 62 + digit
    return n if code else None


def check_url(url: object) -> str:
    if not isinstance(url, str) or not url:
        raise InvalidInputError("url must be a non-empty string")
    try:
        encoded = url.encode()
    except UnicodeEncodeError:
        raise InvalidInputError("url is not valid Unicode") from None
    if len(encoded) > URL_BYTES_MAX:
        raise InvalidInputError(f"url is over {URL_BYTES_MAX} bytes")
    if _UNSAFE.search(url):
        raise InvalidInputError("url has whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port that is not 0..65535 raises here
    except ValueError as exc:
        raise InvalidInputError(f"url does not parse: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInputError("only http and https urls are shortened")
    if not parts.hostname:
        raise InvalidInputError("url has no host")
    return url


def check_alias(alias: object) -> str:
    if not isinstance(alias, str) or not CODE.fullmatch(alias):
        raise InvalidInputError(f"alias must be 1..{ALIAS_CHARS_MAX} of [A-Za-z0-9_-]")
    if alias.lower() in RESERVED:
        raise InvalidInputError(f"alias {alias!r} is reserved")
    return alias
