"""The context of a call a node makes of its own services (an automatic split, a lease's
detaching, a stream's retention): not forwarded, no deadline of its own, and a refusal is
an exception (``RefusedError``), not an aborted RPC."""

from __future__ import annotations

from typing import Any, NoReturn

import grpc


class RefusedError(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class OwnCall:
    def time_remaining(self) -> float | None:
        return None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    async def abort(self, code: grpc.StatusCode, details: str = "", **_: Any) -> NoReturn:
        raise RefusedError(code, details)
