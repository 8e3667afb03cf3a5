"""``kvstore-shortener``: run a shortener web server, or load-test running ones.

    kvstore-shortener serve --port 8081 --endpoints 127.0.0.1:7001,... [--dc dc1]
                            [--range-size 100000] [--public-url http://localhost:8080]
    kvstore-shortener bench --urls http://127.0.0.1:8081,http://127.0.0.1:8082 [--duration 10]

A server logs one JSON event per line to stderr (``range_taken`` with each id range it
takes); SIGTERM or Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys

from kvstore.cli_args import int_within

RANGE_SIZE_MAX = 1_000_000_000  # a take's limit (cluster.counter_keys.TAKE_COUNT_MAX)
COUNTER = "shortener/ids"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kvstore-shortener",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run one web server")
    serve.add_argument("--port", type=int_within(1, 65535), required=True)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--endpoints", required=True, help="kvstore nodes, host:port,...")
    serve.add_argument("--dc", help="the datacenter this server runs in (its nearest nodes)")
    serve.add_argument(
        "--range-size",
        type=int_within(1, RANGE_SIZE_MAX),
        default=100_000,
        help="ids taken from the store at a time (default 100000)",
    )
    serve.add_argument("--public-url", help="the base of short urls (default http://HOST:PORT)")
    serve.add_argument("--server-id", help="this server's name in records (default host:port)")
    bench = sub.add_parser("bench", help="load-test running servers: shortens, then redirects")
    bench.add_argument("--urls", required=True, help="servers to spread the load over")
    bench.add_argument("--duration", type=float, default=10.0, help="seconds per phase (10)")
    bench.add_argument("--concurrency", type=int_within(1, 4096), default=64)
    bench.add_argument("--processes", type=int_within(1, 64), default=2, help="client processes")
    bench.add_argument("--url-bytes", type=int_within(10, 4096), default=80)
    bench.add_argument(
        "--hot", type=int_within(1, 100_000), default=1000, help="codes redirected, per process"
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    from examples.shortener import bench as bench_module  # noqa: PLC0415 - bench alone

    return bench_module.run(args)


def _serve(args: argparse.Namespace) -> int:
    from kvstore import event_loop  # noqa: PLC0415 - the server stack, for serve alone
    from kvstore.logging import configure  # noqa: PLC0415

    configure(json=True)
    try:
        return event_loop.run(_run_server(args))
    except KeyboardInterrupt:
        return 130


async def _run_server(args: argparse.Namespace) -> int:
    import structlog  # noqa: PLC0415
    from aiohttp import web  # noqa: PLC0415

    from examples.shortener.app import Metrics, make_app  # noqa: PLC0415
    from examples.shortener.ids import IdBlocks  # noqa: PLC0415
    from examples.shortener.links import Links  # noqa: PLC0415
    from kvstore import AsyncClient  # noqa: PLC0415

    server_id = args.server_id or f"{socket.gethostname()}:{args.port}"
    public_url = (args.public_url or f"http://{args.host}:{args.port}").rstrip("/")
    log = structlog.get_logger("shortener").bind(server=server_id)
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    metrics = Metrics()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def taken(start: int, end: int) -> None:
        metrics.ranges.inc()
        log.info("range_taken", counter=COUNTER, start=start, end=end)

    log.info("starting", port=args.port, endpoints=endpoints, range_size=args.range_size)
    async with AsyncClient(endpoints, timeout_s=10, dc=args.dc) as kv:
        ids = IdBlocks(lambda n: kv.take_range(COUNTER, n), args.range_size, on_range=taken)
        links = Links(kv, ids, server_id, on_cache=metrics.cache_lookup)
        links.start()
        runner = web.AppRunner(make_app(links, ids, metrics, public_url), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, args.host, args.port, reuse_address=True)
            try:
                await site.start()
            except OSError as exc:
                print(
                    f"kvstore-shortener: cannot listen on {args.host}:{args.port}: {exc.strerror}",
                    file=sys.stderr,
                )
                return 1
            # The first range before anything is minted (and before /healthz says ready).
            while not ids.ranges and not stop.is_set():
                try:
                    await ids.prime()
                except Exception as exc:
                    log.warning("first_range_failed", error=str(exc))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)
            if not stop.is_set():  # stopped while still waiting for the store: never served
                log.info("serving", address=f"{args.host}:{args.port}", public_url=public_url)
                await stop.wait()
        finally:
            await runner.cleanup()
            await links.close()
            await ids.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
