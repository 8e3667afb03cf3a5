"""Links in the store, and the cache in front of them that a watch keeps true.

Rules:
- A link is the key ``shortener/links/<code>`` holding JSON (``url``, ``created``,
  ``server``, ``permanent``), written by a Txn "if absent": a code never names two links at
  once, whether minted or chosen as an alias. A minted code that meets an alias already
  stored is skipped (the next id is minted). Ids are never minted twice; a deleted link's
  code may be chosen again as an alias (deletes are not authenticated: a demo's API).
- Redirects read through a bounded TTL cache (``cachetools.TTLCache``). A watch on the
  links' prefix drops a code from the cache when its link is deleted, on every server, as
  soon as the delete is applied. Nothing is cached until the watch is known to be up (its
  first event or progress mark), and when it breaks the cache is emptied and caching stops
  until it is up again, so a deletion it might have missed is never served from the cache.
  A read that overlapped a deletion, or a break or restart of the watch (``_epoch`` moved),
  is answered but not cached.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import structlog
from cachetools import TTLCache

from examples.shortener.codes import base62
from examples.shortener.ids import IdBlocks
from kvstore import AsyncClient

PREFIX = "shortener/links/"
CACHE_SIZE = 100_000
CACHE_TTL_S = 300.0


@dataclass(frozen=True, slots=True)
class Link:
    code: str
    url: str
    created: float  # seconds since the epoch
    server: str  # the server that stored it
    permanent: bool = False  # redirect with 301, not 302

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @staticmethod
    def decode(raw: bytes) -> Link:
        fields = json.loads(raw)
        return Link(**fields)


class AliasTakenError(Exception):
    pass


class Links:
    def __init__(
        self,
        kv: AsyncClient,
        ids: IdBlocks,
        server: str,
        *,
        cache_size: int = CACHE_SIZE,
        cache_ttl_s: float = CACHE_TTL_S,
        on_cache: Callable[[bool], None] | None = None,
    ) -> None:
        self._kv = kv
        self._ids = ids
        self.server = server
        self._cache: TTLCache[str, Link] = TTLCache(cache_size, cache_ttl_s)
        self._on_cache = on_cache  # told hit (True) or miss (False)
        self._watching = False
        # Moves at every deletion the watch sees and every break or restart of it: a read
        # that spans a move is not cached.
        self._epoch = 0
        self._watch: asyncio.Task[None] | None = None
        self._log = structlog.get_logger("shortener").bind(server=server)

    def start(self) -> None:
        self._watch = asyncio.create_task(self._invalidate_forever())

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)

    @property
    def caching(self) -> bool:
        return self._watching

    async def shorten(self, url: str, alias: str | None, *, permanent: bool = False) -> Link:
        if alias is not None:
            link = Link(alias, url, time.time(), self.server, permanent)
            if not await self._store_if_absent(link):
                raise AliasTakenError(alias)
            return link
        while True:
            link = Link(base62(await self._ids.next_id()), url, time.time(), self.server, permanent)
            if await self._store_if_absent(link):
                return link
            self._log.info("minted_code_taken_by_alias", code=link.code)

    async def resolve(self, code: str) -> Link | None:
        cached = self._cache.get(code)
        if self._on_cache is not None:
            self._on_cache(cached is not None)
        if cached is not None:
            return cached
        epoch, watching = self._epoch, self._watching
        got = await self._kv.get(PREFIX + code)
        if got is None:
            return None
        link = Link.decode(got.value)
        if watching and self._watching and epoch == self._epoch:
            self._cache[code] = link
        return link

    async def delete(self, code: str) -> bool:
        self._cache.pop(code, None)
        return await self._kv.delete(PREFIX + code)

    async def _store_if_absent(self, link: Link) -> bool:
        key = PREFIX + link.code
        result = await (
            self._kv.txn().if_create_revision(key, "=", 0).then_put(key, link.encode()).commit()
        )
        return result.succeeded

    async def _invalidate_forever(self) -> None:
        while True:
            try:
                events = self._kv.watch(PREFIX, on_progress=self._up)
                async for event in events:
                    self._up()
                    if event.type == "DELETE":
                        self._epoch += 1
                        code = event.key[len(PREFIX) :].decode(errors="replace")
                        self._cache.pop(code, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.warning("cache_watch_broken", error=f"{type(exc).__name__}: {exc}")
            finally:
                self._watching = False
                self._epoch += 1
                self._cache.clear()
            await asyncio.sleep(0.5)

    def _up(self, _token: str = "") -> None:
        if not self._watching:
            self._log.info("cache_watch_up")
            self._epoch += 1
        self._watching = True
