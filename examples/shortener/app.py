"""The shortener's web application (aiohttp): the JSON API, redirects, the page, health and
metrics.

Routes:
- ``POST /api/links`` ``{"url", "alias"?, "permanent"?}`` → 201 ``{"code", "short_url",
  "url"}``; 400 with ``{"error"}`` for a malformed body, URL or alias; 409 for a taken alias.
- ``GET /{code}`` → 302 to the URL (301 for a permanent link), else the 404 page.
- ``GET /api/links/{code}`` → the record (404 JSON if none); ``DELETE`` → 204 (404 if none).
- ``GET /`` the page; ``GET /healthz`` (503 until the first id range is taken);
  ``GET /metrics`` Prometheus text.
- The store unreachable → 503 with ``{"error"}``; never a traceback to the caller.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from examples.shortener.codes import CODE, InvalidInputError, check_alias, check_url
from examples.shortener.ids import IdBlocks
from examples.shortener.links import AliasTakenError, Link, Links
from examples.shortener.page import home, not_found
from kvstore import KvError

BODY_BYTES_MAX = 16 << 10
RECENT = 20
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "shortener_requests", "HTTP requests", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "shortener_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.cache = Counter(
            "shortener_cache_lookups", "redirect cache lookups", ["result"], registry=self.registry
        )
        self.ids_left = Gauge(
            "shortener_ids_left", "ids left in the current range", registry=self.registry
        )
        self.ranges = Counter(
            "shortener_ranges_taken", "id ranges taken from the store", registry=self.registry
        )

    def cache_lookup(self, hit: bool) -> None:
        self.cache.labels("hit" if hit else "miss").inc()


def make_app(links: Links, ids: IdBlocks, metrics: Metrics, public_url: str) -> web.Application:
    recent: collections.deque[Link] = collections.deque(maxlen=RECENT)
    log = structlog.get_logger("shortener").bind(server=links.server)

    @web.middleware
    async def measured(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except KvError as exc:
            status = 503
            log.warning("store_unavailable", error=f"{exc.code.name}: {exc.details}")
            return _error(503, f"the store did not answer: {exc.code.name}")
        finally:
            metrics.requests.labels(name, str(status)).inc()
            metrics.latency.labels(name).observe(time.perf_counter() - started)

    async def create(request: web.Request) -> web.Response:
        try:
            raw = await request.read()  # the whole body, however it arrives
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"a request body is at most {BODY_BYTES_MAX} bytes")
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise InvalidInputError("the body must be a JSON object")
            url = check_url(body.get("url"))
            alias = body.get("alias")
            if alias is not None:
                alias = check_alias(alias)
            permanent = body.get("permanent", False)
            if not isinstance(permanent, bool):
                raise InvalidInputError("permanent must be true or false")
        except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
            message = str(exc) if isinstance(exc, InvalidInputError) else "the body is not JSON"
            return _error(400, message)
        try:
            link = await links.shorten(url, alias, permanent=permanent)
        except AliasTakenError:
            return _error(409, f"alias {alias} is taken")
        recent.appendleft(link)
        metrics.ids_left.set(ids.left)
        return web.json_response(
            {"code": link.code, "short_url": f"{public_url}/{link.code}", "url": link.url},
            status=201,
        )

    async def redirect(request: web.Request) -> web.Response:
        code = request.match_info["code"]
        link = await links.resolve(code) if _plausible(code) else None
        if link is None:
            return web.Response(status=404, text=not_found(code), content_type="text/html")
        # The stored URL as it was given (validated: no CR, LF or controls), not re-encoded.
        status = 301 if link.permanent else 302
        return web.Response(status=status, headers={"Location": link.url})

    async def record(request: web.Request) -> web.Response:
        code = request.match_info["code"]
        link = await links.resolve(code) if _plausible(code) else None
        if link is None:
            return _error(404, f"no link {code}")
        fields = {
            "code": link.code,
            "url": link.url,
            "short_url": f"{public_url}/{link.code}",
            "created": link.created,
            "server": link.server,
            "permanent": link.permanent,
        }
        return web.json_response(fields)

    async def delete(request: web.Request) -> web.Response:
        code = request.match_info["code"]
        if not _plausible(code) or not await links.delete(code):
            return _error(404, f"no link {code}")
        return web.Response(status=204)

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=home(links.server, recent, public_url), content_type="text/html")

    async def healthz(_request: web.Request) -> web.Response:
        ready = bool(ids.ranges)
        fields: dict[str, Any] = {
            "ok": ready,
            "server": links.server,
            "ids_left": ids.left,
            "ranges_taken": ids.ranges_taken,
            "recent_ranges": list(ids.ranges),
            "cache_watch_up": links.caching,
        }
        return web.json_response(fields, status=200 if ready else 503)

    async def metrics_text(_request: web.Request) -> web.Response:
        metrics.ids_left.set(ids.left)
        response = web.Response(body=generate_latest(metrics.registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    app = web.Application(middlewares=[measured], client_max_size=BODY_BYTES_MAX)
    app.router.add_get("/", page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_text)
    app.router.add_post("/api/links", create)
    app.router.add_get("/api/links/{code}", record)
    app.router.add_delete("/api/links/{code}", delete)
    app.router.add_get("/{code}", redirect)
    return app


def _plausible(code: str) -> bool:
    """A code that could be stored (minted or alias): anything else is 404 without a read."""
    return CODE.fullmatch(code) is not None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
