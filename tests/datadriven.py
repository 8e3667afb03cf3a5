"""A small runner for cockroachdb/datadriven-style golden files.

A file is a sequence of blocks::

    command arg key=value
    ----
    expected output lines

Blocks are separated by a blank line; ``#`` lines between blocks are comments. Each command
runs through a handler that returns the output text; a mismatch fails the test with a diff.
``KV_REWRITE=1 pytest tests/interaction`` rewrites the expected outputs after a deliberate
change (review the diff before committing it).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Block:
    comments: list[str]
    command: str
    expected: str


def parse(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        comments: list[str] = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith("#")):
            if lines[i].strip():
                comments.append(lines[i])
            i += 1
        if i >= len(lines):
            if comments:
                blocks.append(Block(comments, "", ""))
            break
        command = lines[i]
        i += 1
        assert i < len(lines) and lines[i] == "----", f"missing ---- after {command!r}"
        i += 1
        out: list[str] = []
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        blocks.append(Block(comments, command, "\n".join(out)))
    return blocks


def render(blocks: list[Block]) -> str:
    parts: list[str] = []
    for b in blocks:
        parts.extend(b.comments)
        if b.command:
            parts.extend([b.command, "----", b.expected or "ok", ""])
    return "\n".join(parts).rstrip("\n") + "\n"


def run_file(path: Path, handler: Callable[[str], str]) -> None:
    blocks = parse(path.read_text())
    failures: list[str] = []
    for block in blocks:
        if not block.command:
            continue
        actual = handler(block.command).rstrip("\n") or "ok"
        if actual != (block.expected or "ok"):
            diff = "\n".join(
                difflib.unified_diff(
                    block.expected.splitlines(),
                    actual.splitlines(),
                    "expected",
                    "actual",
                    lineterm="",
                )
            )
            failures.append(f"{path.name}: {block.command}\n{diff}")
        block.expected = actual
    if os.environ.get("KV_REWRITE") == "1":
        path.write_text(render(blocks))
        return
    assert not failures, "\n\n".join(failures)
