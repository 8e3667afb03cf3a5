"""A browser on the shortener's page: fill the form, shorten, copy, follow the short link
and land on the exact URL (through the 302); an alias already taken shows its error."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from examples.shortener.local import Servers
from kvstore import AsyncClient
from kvstore.local_cluster import LocalCluster
from tests.e2e.browser import find_chromium
from tests.ports import free_base_port
from tests.system.test_local_cluster import free_base_port as free_cluster_port

# As the machine's probe starts Chromium: no sandbox as root, no calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class _Target(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"<html><title>target</title><body>arrived at {self.path}</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def target() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Target)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def _ready(endpoints: list[str]) -> None:
    async with AsyncClient(endpoints, timeout_s=30) as kv:
        await kv.put("ready", "1")


def test_the_page_shortens_a_link_and_the_short_link_redirects(tmp_path: Path, target: str) -> None:
    chromium = find_chromium()
    assert chromium is not None, "make e2e runs this only where a Chromium is"
    local = LocalCluster(tmp_path / "data", base_port=free_cluster_port())
    port = free_base_port(lambda b: [f"127.0.0.1:{b}"])
    servers = Servers(local.endpoints, [port], tmp_path)
    local.start_all()
    try:
        asyncio.run(_ready(local.endpoints))
        servers.start_all()
        servers.wait_ready(port)
        long_url = f"{target}/landing?from=e2e&pad={'x' * 1500}"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(servers.url(port) + "/")
            assert page.title() == "kvstore shortener"
            page.fill("input[name=url]", long_url)
            page.click("button[type=submit]")
            short = page.locator("#short-url")
            short.wait_for(timeout=10_000)
            short_url = short.get_attribute("href")
            assert short_url is not None and short_url.startswith(servers.url(port) + "/")
            page.click("#copy")
            page.wait_for_function(
                "document.getElementById('copy').textContent !== 'Copy'", timeout=5_000
            )
            page.goto(short_url)  # the 302, followed by the browser
            assert page.url == long_url
            assert "arrived at /landing" in page.content()

            # The page lists it among the server's recent links; a taken alias is an error.
            page.goto(servers.url(port) + "/")
            assert page.locator(f"a[href='{short_url}']").count() == 1
            for attempt in ("first", "second"):
                page.fill("input[name=url]", f"{target}/{attempt}")
                page.fill("input[name=alias]", "e2e-alias")
                page.click("button[type=submit]")
                if attempt == "first":
                    page.locator("#short-url").wait_for(timeout=10_000)
                else:
                    page.locator("#result.error").wait_for(timeout=10_000)
                    assert "taken" in page.locator("#result").inner_text()
            browser.close()
    finally:
        servers.stop_all()
        local.stop_all()
