"""What the node process costs: CPU time, resident memory, disk space (for operators and bench)."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path


def cpu_seconds() -> float:
    """User + system CPU time of this process, every thread included."""
    return time.process_time()


def rss_bytes() -> int:
    """Resident memory now (``/proc``), or the peak where ``/proc`` is absent."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def disk_bytes(directory: Path) -> int:
    """Blocks actually allocated under ``directory`` (LMDB files may be sparse)."""
    total = 0
    for path in directory.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_blocks * 512
        except OSError:
            continue
    return total
