"""How the server's allocator gives memory back (glibc's malloc; a no-op anywhere else).

Measured in issue 19's flood (docs/deploy.md): with glibc's defaults a server that traced one long text after another,
each on its own session's script thread, kept the freed working memory of every trace. glibc gives each thread an
arena (up to 8 per core: 16 on 2 cores) and, after the first large block is freed, raises its mmap threshold to
32 MiB, so the 3-32 MiB tensors of every forward pass come from the arenas; freed, they stay resident, interleaved
with the cache's long-lived tensors so that the heaps cannot shrink. Sixteen sessions tracing 1,024 tokens each left
the server at 5.0-6.4 GiB of RSS with 0.9-1.2 GiB of it in use: malloc_trim(0) then gave back 3.1-3.3 GiB.

`apply_malloc_settings` (called once at start-up, app.py) fixes the mmap threshold (LAB_MALLOC_MMAP_MB, default 1):
every block of at least that size gets its own mapping, returned to the system when freed, so the server's RSS
follows what it holds (which the trace cache's byte budget and admission bound) instead of what it once held. The same
16-session flood peaked at 1.8-1.9 GiB with it. The cost is a page fault for each page of each such block as it is
first written: a 1,024-token GPT-2-small trace took about 20-25% longer (bench: `--only malloc`).

It also caps the malloc arenas (LAB_MALLOC_ARENAS, default 2; glibc's own default is 8 per core): every session's
script thread otherwise may get an arena of its own, each keeping its freed small blocks. The 30-session flood
(2026-12-02, quiet 2-core machine, 30 distinct 1,024-token texts): RSS peak 2,075-2,081 MiB in three runs with
glibc's arenas, 2,037 MiB with MALLOC_ARENA_MAX=2 (its growth over the idle server 1,027 MiB, the trace budget
1,024), and the flood was faster (slowest page 122 s against 135-142 s; the other sessions' p95 54 against 71-83 ms).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_MMAP_THRESHOLD = -3           # glibc's mallopt parameter numbers (malloc.h)
M_ARENA_MAX = -8
DEFAULT_MMAP_MB = 1.0
DEFAULT_ARENAS = 2
_applied: list[dict] = []


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()                 # glibc only (musl has no such function)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


def mmap_threshold_bytes() -> int | None:
    """LAB_MALLOC_MMAP_MB as bytes (default 1 MiB); None: leave glibc's own dynamic threshold (0, or a glibc setting
    of its own in MALLOC_MMAP_THRESHOLD_ / GLIBC_TUNABLES, which wins). Raises ValueError for a value it cannot read."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return None
    raw = os.environ.get("LAB_MALLOC_MMAP_MB", "").strip()
    try:
        mb = float(raw) if raw else DEFAULT_MMAP_MB
    except ValueError:
        mb = -1.0
    if not 0 <= mb <= 32:                          # glibc caps the threshold at 32 MiB on 64-bit systems
        raise ValueError(f"LAB_MALLOC_MMAP_MB must be a number of MiB from 0 to 32 (got {raw!r})")
    return int(mb * 2**20) or None


def arena_max() -> int | None:
    """LAB_MALLOC_ARENAS (default 2): at most this many malloc arenas for the process's threads; None: glibc's own
    (0, or MALLOC_ARENA_MAX / GLIBC_TUNABLES set, which wins). Raises ValueError for a value it cannot read."""
    if "MALLOC_ARENA_MAX" in os.environ or "arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return None
    raw = os.environ.get("LAB_MALLOC_ARENAS", "").strip()
    if not raw:
        return DEFAULT_ARENAS
    if not raw.isdigit() or int(raw) > 64:
        raise ValueError(f"LAB_MALLOC_ARENAS must be a whole number of arenas from 0 to 64 (got {raw!r})")
    return int(raw) or None


def apply_malloc_settings() -> dict:
    """Set the allocator for a long-running server, once per process (start-up). Returns what it did."""
    if _applied:
        return _applied[0]
    libc = _glibc()
    done: dict = {"glibc": libc is not None, "mmap_threshold": None}
    try:
        threshold = mmap_threshold_bytes()
    except ValueError as e:
        done["error"] = str(e)
        threshold = int(DEFAULT_MMAP_MB * 2**20)
    if libc is not None and threshold and libc.mallopt(M_MMAP_THRESHOLD, threshold) == 1:
        done["mmap_threshold"] = threshold
    done["arena_max"] = None
    try:
        arenas = arena_max()
    except ValueError as e:
        done["error"] = "; ".join(filter(None, [done.get("error"), str(e)]))
        arenas = DEFAULT_ARENAS
    if libc is not None and arenas and libc.mallopt(M_ARENA_MAX, arenas) == 1:
        done["arena_max"] = arenas
    _applied.append(done)
    return done


def give_back() -> bool:
    """malloc_trim(0): return the free pages of every arena to the system (glibc only). For measurements."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
