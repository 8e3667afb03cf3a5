"""``make shortener``: a local kvstore cluster, three shortener servers, and HAProxy in
front when it is installed (else the three addresses are printed). Ctrl-C stops it all.

    .venv/bin/python -m examples.shortener.local [--dir data-shortener] [--port 8080]

``Servers`` (start, SIGKILL and restart shortener processes by PID, wait until they are
ready) is also what the end-to-end test drives.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from kvstore import AsyncClient
from kvstore.local_cluster import LocalCluster, stop_processes

HAPROXY_CFG = Path(__file__).parent / "deploy" / "haproxy.cfg"


class Servers:
    """Shortener server processes on ``ports`` (one per datacenter, in order), each logging
    to ``log_dir/shortener-<port>.log`` (appended across restarts)."""

    def __init__(
        self, endpoints: list[str], ports: list[int], log_dir: Path, *, range_size: int = 100_000
    ) -> None:
        self.endpoints = endpoints
        self.ports = ports
        self.log_dir = log_dir
        self.range_size = range_size
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def log_path(self, port: int) -> Path:
        return self.log_dir / f"shortener-{port}.log"

    def start(self, port: int) -> None:
        n = self.ports.index(port)
        # Its own datacenter's node first: it is the server's gateway to the store.
        endpoints = self.endpoints[n:] + self.endpoints[:n]
        log = self.log_path(port).open("ab")
        self.procs[port] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "examples.shortener",
                "serve",
                "--port",
                str(port),
                "--endpoints",
                ",".join(endpoints),
                "--dc",
                f"dc{n % 3 + 1}",
                "--range-size",
                str(self.range_size),
                "--server-id",
                f"s{n + 1}",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )

    def start_all(self) -> None:
        for port in self.ports:
            self.start(port)

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        stop_processes(list(self.procs.values()))
        self.procs.clear()

    def wait_ready(self, port: int, timeout_s: float = 60.0) -> None:
        """Until ``port``'s /healthz answers 200 (it holds an id range)."""
        deadline = time.monotonic() + timeout_s
        while True:
            proc = self.procs.get(port)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"shortener on {port} exited: see {self.log_path(port)}")
            try:
                with urllib.request.urlopen(self.url(port) + "/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"shortener on {port} not ready in {timeout_s:g} s")
            time.sleep(0.1)

    def ranges_taken(self) -> dict[str, list[tuple[int, int]]]:
        """Every id range each server logged taking (all its lives), by server id."""
        taken: dict[str, list[tuple[int, int]]] = {}
        for port in self.ports:
            path = self.log_path(port)
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                if '"range_taken"' in line:
                    event = json.loads(line)
                    taken.setdefault(event["server"], []).append((event["start"], event["end"]))
        return taken


def _free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def _ready(endpoints: list[str]) -> None:
    async with AsyncClient(endpoints, timeout_s=60) as kv:
        await kv.put("shortener/ready", "1")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make shortener", description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path("data-shortener"))
    parser.add_argument("--port", type=int, default=8080, help="HAProxy's port (8080)")
    parser.add_argument("--base-port", type=int, default=7100, help="kvstore nodes' base port")
    args = parser.parse_args(argv)
    local = LocalCluster(args.dir, base_port=args.base_port)
    servers = Servers(local.endpoints, [args.port + 1, args.port + 2, args.port + 3], args.dir)
    haproxy: subprocess.Popen[bytes] | None = None
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    busy = [p for p in (args.port, *servers.ports) if not _free(p)]
    if busy:
        print(f"make shortener: port {busy[0]} is in use (another shortener?); use --port",
              file=sys.stderr)  # fmt: skip
        return 2
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        local.start_all()
        asyncio.run(_ready(local.endpoints))
        servers.start_all()
        for port in servers.ports:
            servers.wait_ready(port)
        print(f"kvstore: 3 nodes ({','.join(local.endpoints)}), data and logs in {args.dir}")
        for port in servers.ports:
            print(f"  shortener  {servers.url(port)}")
        if shutil.which("haproxy"):
            env = os.environ | {
                "LISTEN": f"127.0.0.1:{args.port}",
                "STATS": f"127.0.0.1:{args.port + 404}",
                **{f"SHORTENER{i + 1}": f"127.0.0.1:{p}" for i, p in enumerate(servers.ports)},
            }
            haproxy = subprocess.Popen(["haproxy", "-f", str(HAPROXY_CFG)], env=env)
            print(
                f"  HAProxy    http://127.0.0.1:{args.port}  (open it in a browser;"
                f" statistics on :{args.port + 404})"
            )
        else:
            print(
                "  (HAProxy is not installed: apt-get install haproxy puts it in front;"
                " meanwhile use a server's address)"
            )
        print("Ctrl-C stops everything.", flush=True)
        while not stopping:
            dead = [p for p, proc in servers.procs.items() if proc.poll() is not None]
            if dead:
                print(f"make shortener: the server on {dead[0]} exited; see"
                      f" {servers.log_path(dead[0])}; stopping", file=sys.stderr)  # fmt: skip
                return 1
            time.sleep(0.2)
    finally:
        if haproxy is not None:
            stop_processes([haproxy])
        servers.stop_all()
        local.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
