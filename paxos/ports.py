"""The core's only windows to the world: an injected random source and an injected logger.

Rules:
- The core never reads a clock or OS entropy; an ``Rng`` is passed in. ``random.Random(seed)``
  satisfies the protocol, so the shell and the simulator choose the seed.
- The core logs only through ``Logger``. A structlog ``BoundLogger`` satisfies it. The default
  is ``NullLogger``, which drops everything (after h2's ``DummyLogger``).
"""

from __future__ import annotations

from typing import Protocol


class Rng(Protocol):
    """Deterministic randomness. ``random.Random(seed)`` satisfies this."""

    def randrange(self, start: int, stop: int, /) -> int: ...


class Logger(Protocol):
    """Structured diagnostics: a stable snake_case event name plus fields."""

    def info(self, event: str, **fields: object) -> object: ...

    def debug(self, event: str, **fields: object) -> object: ...


class NullLogger:
    """A Logger that drops every event."""

    def info(self, event: str, **fields: object) -> object:
        return None

    def debug(self, event: str, **fields: object) -> object:
        return None


class RecordingLogger:
    """A Logger that keeps ``(event, fields)`` pairs; tests and golden scripts render them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def info(self, event: str, **fields: object) -> object:
        self.events.append((event, fields))
        return None

    def debug(self, event: str, **fields: object) -> object:
        return None

    def drain(self) -> list[tuple[str, dict[str, object]]]:
        out, self.events = self.events, []
        return out
