"""The service's two HTML pages: the form (with this server's recent links) and the 404."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from examples.shortener.links import Link

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 44rem; margin: 3rem auto; padding: 0 1rem;
       color: #1d2330; }
h1 { font-size: 1.6rem; } form { display: flex; gap: .5rem; flex-wrap: wrap; }
input { padding: .55rem; font-size: 1rem; border: 1px solid #aab; border-radius: 4px; }
input[name=url] { flex: 1 1 22rem; } input[name=alias] { flex: 0 1 9rem; }
button { padding: .55rem 1rem; font-size: 1rem; border: 0; border-radius: 4px;
         background: #2f5fd0; color: white; cursor: pointer; }
#result { margin: 1rem 0; min-height: 2.5rem; } .error { color: #b3261e; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
td { padding: .3rem .4rem; border-top: 1px solid #e3e5ea; overflow-wrap: anywhere; }
footer { margin-top: 2rem; color: #667; font-size: .8rem; }
"""

_SCRIPT = """
const form = document.getElementById('shorten');
const result = document.getElementById('result');
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const body = {url: form.url.value};
  if (form.alias.value) body.alias = form.alias.value;
  result.textContent = 'Shortening…';
  const answer = await fetch('/api/links', {method: 'POST', body: JSON.stringify(body),
                                             headers: {'Content-Type': 'application/json'}});
  const data = await answer.json();
  result.replaceChildren();
  if (!answer.ok) {
    result.className = 'error'; result.textContent = data.error; return;
  }
  result.className = '';
  const link = document.createElement('a');
  link.id = 'short-url'; link.href = data.short_url; link.textContent = data.short_url;
  const copy = document.createElement('button');
  copy.type = 'button'; copy.id = 'copy'; copy.textContent = 'Copy';
  copy.addEventListener('click', async () => {
    try { await navigator.clipboard.writeText(data.short_url); copy.textContent = 'Copied'; }
    catch (e) { copy.textContent = 'Select and copy'; }
  });
  result.append(link, ' ', copy);
});
"""


def home(server: str, recent: Iterable[Link], base_url: str) -> str:
    rows = "".join(
        f'<tr><td><a href="{escape(base_url)}/{escape(link.code)}">{escape(link.code)}</a></td>'
        f"<td>{escape(link.url)}</td></tr>"
        for link in recent
    )
    table = f"<table>{rows}</table>" if rows else "<p>None yet.</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kvstore shortener</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{_STYLE}</style></head>
<body><h1>Shorten a link</h1>
<form id="shorten">
  <input name="url" type="url" placeholder="https://example.com/a/long/path" required
         maxlength="4096" aria-label="URL to shorten">
  <input name="alias" placeholder="alias (optional)" pattern="[A-Za-z0-9_-]{{1,64}}"
         aria-label="Alias">
  <button type="submit">Shorten</button>
</form>
<div id="result" role="status"></div>
<h2>Recent links on this server</h2>
{table}
<footer>Served by {escape(server)}; links live in kvstore.</footer>
<script>{_SCRIPT}</script>
</body></html>
"""


def not_found(code: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Not found</title></head>
<body style="font-family: system-ui, sans-serif; margin: 3rem auto; max-width: 40rem">
<h1>No link here</h1><p>There is no short link <code>{escape(code)}</code>.
It may have been deleted. <a href="/">Shorten a link</a></p></body></html>
"""
