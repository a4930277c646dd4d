"""Where a Streamlit server's memory goes, measured from inside the server (for investigating issue 19's flood).

Started in the server process by a `sitecustomize` on PYTHONPATH (see `install`), it writes one JSON line every
`LAB_MEMPROBE_EVERY` seconds (default 0.5) to the file named by LAB_MEMPROBE:

  rss / hwm            the process's resident memory now and its peak (/proc/self/status)
  heap                 glibc's mallinfo2: bytes in use (uordblks + hblkhd), free but kept (fordblks), mmapped
  py                   tracemalloc's current and peak (only with LAB_MEMPROBE_TRACEMALLOC=1: it slows Python)
  cache                the trace cache: bytes used / reserved, items by kind (run, attention_views, grid, head …)
  sessions             the sessions the runtime holds, and the script threads running now
  doing                for each running script thread, its innermost frame of the lab's own code (file:line func),
                       its CPU ticks so far and its thread id
  torch_threads        torch.get_num_threads() as the probe's thread reads it
  malloc               what model/serving/memory.py's start-up setting did (None before it ran)

On SIGUSR1 it writes a snapshot: tracemalloc's top lines (if on), gc's object counts by type, the sizes of every
session's session_state, the trace cache's items, the traced runs alive outside the cache and what holds them, glibc's
arenas; on SIGUSR2 the same, then it calls malloc_trim(0) and says what RSS that gave back.
"""
from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]


_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = _MallInfo2
_libc.fopen.restype = ctypes.c_void_p
_libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
_libc.fclose.argtypes = [ctypes.c_void_p]
_libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]


def heap() -> dict:
    m = _libc.mallinfo2()
    return {"in_use": m.uordblks + m.hblkhd, "free_kept": m.fordblks, "mmapped": m.hblkhd, "arena": m.arena}


def arenas() -> list[tuple[int, int]]:
    """(system bytes, free bytes) of each glibc malloc arena (malloc_info's XML)."""
    import re
    import tempfile

    with tempfile.NamedTemporaryFile("r", suffix=".xml") as tmp:
        fp = _libc.fopen(tmp.name.encode(), b"w")
        _libc.malloc_info(0, fp)
        _libc.fclose(fp)
        xml = tmp.read()
    out = []
    for heap_xml in re.findall(r'<heap nr="\d+">(.*?)</heap>', xml, re.S):
        free = sum(int(x) for x in re.findall(r'<total type="(?:fast|rest)" count="\d+" size="(\d+)"', heap_xml))
        system = re.search(r'<system type="current" size="(\d+)"', heap_xml)
        out.append((int(system.group(1)) if system else 0, free))
    return out


def status() -> dict:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
            out[k] = int(v.split()[0]) * (1 if k == "Threads" else 1024)
    return {"rss": out.get("VmRSS", 0), "hwm": out.get("VmHWM", 0), "anon": out.get("RssAnon", 0),
            "file": out.get("RssFile", 0), "threads": out.get("Threads", 0)}


def _cache() -> dict:
    try:
        from app_pages.common import traces
    except Exception:
        return {}
    if "app_pages.common" not in sys.modules:
        return {}
    try:
        c = traces()
    except Exception:
        return {}
    kinds: dict[str, list[int]] = {}
    with c._lock:
        for key, (_, size) in c._items.items():
            k = kinds.setdefault(str(key[0]), [0, 0])
            k[0] += 1
            k[1] += size
        return {"used": c._used, "reserved": c._reserved, "running": c._running, "queued": len(c._queue),
                "kinds": kinds}


def _sessions() -> dict:
    try:
        from streamlit.runtime import Runtime

        rt = Runtime.instance()
        infos = rt._session_mgr.list_sessions()
        active = rt._session_mgr.list_active_sessions()
        return {"all": len(infos), "active": len(active)}
    except Exception as e:
        return {"error": str(e)[:80]}


def _cpu_ticks(native_id: int) -> int:
    """utime + stime of one thread of this process, in clock ticks (/proc/self/task/<tid>/stat)."""
    try:
        fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def _doing() -> list[str]:
    out = []
    names = {t.ident: t.name for t in threading.enumerate()}
    natives = {t.ident: t.native_id for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if not names.get(ident, "").startswith("ScriptRunner"):
            continue
        where, f = "", frame
        inner = None
        while f is not None:
            fn = f.f_code.co_filename
            if fn.startswith(ROOT) and "memprobe" not in fn:
                inner = f"{os.path.relpath(fn, ROOT)}:{f.f_lineno} {f.f_code.co_name}"
                break
            f = f.f_back
        top = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno} {frame.f_code.co_name}"
        out.append(f"{inner or '-'} | {top} | cpu {_cpu_ticks(natives.get(ident, 0))} tid {natives.get(ident, 0)}")
    return out


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _malloc() -> dict | None:
    mem = sys.modules.get("model.serving.memory")
    return mem._applied[0] if mem is not None and mem._applied else None


def sample() -> dict:
    import tracemalloc

    d = {"t": round(time.time(), 2), **status(), "heap": heap(), "cache": _cache(), "sessions": _sessions(),
         "doing": _doing(), "torch_threads": _torch_threads(), "malloc": _malloc()}
    if tracemalloc.is_tracing():
        cur, peak = tracemalloc.get_traced_memory()
        d["py"] = {"current": cur, "peak": peak}
        tracemalloc.reset_peak()
    return d


def _deep_size(o, seen: set, depth: int = 0) -> int:
    if id(o) in seen or depth > 12:
        return 0
    seen.add(id(o))
    try:
        import numpy as np
        import torch

        if isinstance(o, np.ndarray):
            return o.nbytes
        if isinstance(o, torch.Tensor):
            return o.numel() * o.element_size()
    except Exception:
        pass
    n = sys.getsizeof(o, 0)
    if isinstance(o, dict):
        n += sum(_deep_size(k, seen, depth + 1) + _deep_size(v, seen, depth + 1) for k, v in o.items())
    elif isinstance(o, (list, tuple, set, frozenset)):
        n += sum(_deep_size(v, seen, depth + 1) for v in o)
    elif hasattr(o, "__dict__") and not isinstance(o, type):
        n += _deep_size(vars(o), seen, depth + 1)
    return n


def _array_bytes() -> tuple[int, int]:
    import numpy as np
    import torch

    arrays = sum(o.nbytes for o in gc.get_objects() if isinstance(o, np.ndarray) and o.base is None)
    storages = {}
    for o in gc.get_objects():
        if isinstance(o, torch.Tensor):
            st = o.untyped_storage()
            storages[st.data_ptr()] = st.nbytes()
    return arrays, sum(storages.values())


def snapshot(trim: bool = True) -> dict:
    import tracemalloc

    out: dict = {"t": round(time.time(), 2), "kind": "snapshot", **status(), "heap": heap(), "cache": _cache()}
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot()
        out["tracemalloc_top"] = [f"{s.size / 2**20:.1f} MiB {s.count} blocks {s.traceback}"
                                  for s in snap.statistics("lineno")[:30]]
    counts: dict[str, int] = {}
    for o in gc.get_objects():
        counts[type(o).__name__] = counts.get(type(o).__name__, 0) + 1
    out["gc_types"] = sorted(counts.items(), key=lambda kv: -kv[1])[:30]
    try:
        out["numpy_bytes"], out["torch_bytes"] = _array_bytes()
    except Exception as e:
        out["arrays_error"] = str(e)[:100]
    try:
        from streamlit.runtime import Runtime

        rt = Runtime.instance()
        sizes = []
        for info in rt._session_mgr.list_sessions():
            ss = info.session.session_state
            state = {k: ss[k] for k in ss.filtered_state} if hasattr(ss, "filtered_state") else {}
            sizes.append(_deep_size(state, set()))
        out["session_state_bytes"] = sizes
        mfm = rt.media_file_mgr
        out["media"] = {"files": len(getattr(mfm, "_file_id_to_session_count", {}) or {}),
                        "deferred": len(getattr(mfm, "_deferred_callables", {}) or {})}
    except Exception as e:
        out["sessions_error"] = str(e)[:100]
    out["orphans"] = orphans()
    out["replays"] = replays()
    out["tensors"] = tensor_owners()
    out["arenas"] = arenas()
    if trim:
        before = status()["rss"]
        t0 = time.perf_counter()
        _libc.malloc_trim(0)
        out["malloc_trim"] = {"before": before, "after": status()["rss"], "seconds": time.perf_counter() - t0}
    return out


def _describe(r, cur) -> str:
    what = type(r).__name__
    if isinstance(r, dict):
        key = next((k for k, v in r.items() if v is cur), None)
        owner = [type(o).__name__ for o in gc.get_referrers(r) if getattr(o, "__dict__", None) is r][:1]
        what += f"[{str(key)[:40]}]" + (f" of {owner[0]}" if owner else "")
    elif what == "frame":
        what += f"({r.f_code.co_filename.rsplit('/', 1)[-1]}:{r.f_lineno} {r.f_code.co_name})"
    elif what == "cell":
        fns = [f.__qualname__ for t in gc.get_referrers(r) if isinstance(t, tuple)
               for f in gc.get_referrers(t) if callable(f) and getattr(f, "__closure__", None) is t]
        what += f"(closure of {fns[:2]})"
    elif what == "function":
        what += f"({r.__module__}.{r.__qualname__})"
    elif isinstance(r, (list, tuple)):
        what += f"(len {len(r)})"
    return what


def _chain(o, ignore: set, depth: int = 5, width: int = 3) -> list:
    """The referrers of `o`, `depth` levels up, at most `width` at each (a tree of descriptions)."""
    ignore = set(ignore) | {id(sys._getframe())}

    def up(cur, d):
        if d == 0:
            return []
        found = gc.get_referrers(cur)
        ignore.add(id(found))
        refs = [r for r in found if id(r) not in ignore and type(r).__name__ not in ("list_iterator", "frame")
                or (type(r).__name__ == "frame" and "memprobe" not in r.f_code.co_filename)]
        ignore.add(id(refs))
        del found
        out = []
        for r in refs[:width]:
            ignore.add(id(r))
            out.append([_describe(r, cur), up(r, d - 1)])
        return out
    return up(o, depth)


def _deep_chain(o, ignore: set, depth: int = 14) -> list[str]:
    """One referrer path up from `o`, preferring objects over the lists, tuples and dicts that hold them."""
    path, cur = [], o
    ignore = set(ignore) | {id(sys._getframe())}
    for _ in range(depth):
        found = gc.get_referrers(cur)
        ignore.add(id(found))
        refs = [r for r in found if id(r) not in ignore and type(r).__name__ not in ("list_iterator",)
                and not (type(r).__name__ == "frame" and "memprobe" in r.f_code.co_filename)]
        del found
        ignore.add(id(refs))
        if not refs:
            path.append("(none)")
            break
        rank = lambda r: 0 if type(r).__name__ in ("frame", "cell", "function", "module") else (
            2 if isinstance(r, (list, tuple, dict)) else 1)
        r = min(refs, key=rank)
        ignore.add(id(r))
        path.append(f"{_describe(r, cur)} (of {len(refs)}: {sorted({type(x).__name__ for x in refs})[:6]})")
        refs.clear()
        if type(r).__name__ == "module":
            break
        cur = r
    return path


def replays(limit: int = 3) -> dict:
    """Compact-trace replays alive that no cached run or view reaches (each holds a run's block inputs)."""
    try:
        from app_pages.common import traces
        from model.hf.compact import HFReplay
    except Exception:
        return {}
    c = traces()
    with c._lock:
        items = [v for v, _ in c._items.values()]
    reached = set()
    for v in items:
        for stack in ([s for s in v.trace.attention.values()] if hasattr(v, "trace") else
                      [w.stack for w in v.values()] if isinstance(v, dict) and all(hasattr(w, "stack") for w in v.values())
                      else []):
            for a in stack:
                src = getattr(a, "source", None)
                if src is not None:
                    reached.add(id(src))
    alive = [o for o in gc.get_objects() if isinstance(o, HFReplay)]
    lost = [o for o in alive if id(o) not in reached]
    n = len(alive)
    del alive, items
    return {"alive": n, "unreached": len(lost), "paths": [_deep_chain(o, {id(lost)}) for o in lost[:limit]]}


def orphans(limit: int = 4) -> dict:
    """Traced runs alive but not in the trace cache (what holds them: a referrer path of each, the first few)."""
    try:
        from app_pages.common import traces
        from model.api import Run
    except Exception:
        return {}
    c = traces()
    with c._lock:
        cached = {id(v) for v, _ in c._items.values()}
    runs = [o for o in gc.get_objects() if isinstance(o, Run)]
    lost = [r for r in runs if id(r) not in cached]
    n = len(runs)
    del runs
    return {"runs": n, "not_cached": len(lost), "tokens": [len(r.tokens) for r in lost][:20],
            "paths": [_chain(r, {id(lost)}) for r in lost if len(r.tokens) > 100][:limit]}


def tensor_owners(top: int = 8) -> dict:
    """torch storages alive: those reachable from the trace cache, from loaded models, and the rest (the largest of
    the rest with their shape and one referrer path)."""
    import torch

    from model.serving.store import trace_bytes  # noqa: F401 (its walk is the cache's count)

    def storages_of(obj, acc: dict, seen: set) -> None:
        import dataclasses

        import numpy as np

        stack = [obj]
        while stack:
            o = stack.pop()
            if id(o) in seen:
                continue
            seen.add(id(o))
            if isinstance(o, torch.Tensor):
                st = o.untyped_storage()
                acc[st.data_ptr()] = st.nbytes()
            elif isinstance(o, np.ndarray) or isinstance(o, (str, bytes, int, float)):
                continue
            elif isinstance(o, dict):
                stack += list(o.values())
            elif isinstance(o, (list, tuple, set)):
                stack += list(o)
            elif dataclasses.is_dataclass(o) and not isinstance(o, type):
                stack += [getattr(o, f.name, None) for f in dataclasses.fields(o)]
            elif hasattr(o, "__dict__") and not isinstance(o, (type, torch.nn.Module)):
                stack += list(vars(o).values())

    cached: dict = {}
    models: dict = {}
    try:
        from app_pages.common import store, traces

        c = traces()
        with c._lock:
            items = [v for v, _ in c._items.values()]
        seen: set = set()
        for v in items:
            storages_of(v, cached, seen)
        from model.serving.store import trace_bytes as tb

        counted_once = tb(items)
        for m, _ in list(store()._models.values()):
            mod = getattr(m, "module", None) or getattr(m, "hf", None)
            if mod is not None:
                for t in list(mod.parameters()) + list(mod.buffers()):
                    models[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    except Exception as e:
        return {"error": repr(e)[:200]}
    rest: dict = {}
    for o in gc.get_objects():
        if isinstance(o, torch.Tensor):
            try:
                st = o.untyped_storage()
            except Exception:
                continue
            k = st.data_ptr()
            if k not in cached and k not in models and (k not in rest or rest[k][0] < st.nbytes()):
                rest[k] = (st.nbytes(), o)
    big = sorted(rest.values(), key=lambda x: -x[0])[:top]
    total, count = sum(n for n, _ in rest.values()), len(rest)
    sizes = [(n, list(t.shape), str(t.dtype)) for n, t in big]
    ts = [t for _, t in big[:3]]
    del rest, o, big
    return {"cached": sum(cached.values()), "cache_items_counted_once": counted_once, "models": sum(models.values()), "rest": total, "rest_count": count,
            "rest_sizes": sizes, "rest_top": [_chain(t, {id(ts)}, 5) for t in ts]}


def _loop(path: str, every: float) -> None:
    with open(path, "a") as f:
        while True:
            try:
                f.write(json.dumps(sample()) + "\n")
                f.flush()
            except Exception as e:                # never take the server down
                f.write(json.dumps({"error": repr(e)[:200]}) + "\n")
            time.sleep(every)


def start() -> None:
    path = os.environ.get("LAB_MEMPROBE")
    if not path:
        return
    if os.environ.get("LAB_MEMPROBE_TRACEMALLOC") == "1":
        import tracemalloc

        tracemalloc.start(int(os.environ.get("LAB_MEMPROBE_FRAMES", "1")))

    def on_signal(signum, _frame):
        def go():
            try:
                line = json.dumps(snapshot(trim=signum == signal.SIGUSR2))
            except Exception as e:                 # said in the file, never raised in the server
                line = json.dumps({"kind": "snapshot", "error": repr(e)[:300]})
            with open(path, "a") as f:
                f.write(line + "\n")
        threading.Thread(target=go, daemon=True).start()

    signal.signal(signal.SIGUSR1, on_signal)        # a snapshot
    signal.signal(signal.SIGUSR2, on_signal)        # a snapshot, then malloc_trim(0)
    threading.Thread(target=_loop, args=(path, float(os.environ.get("LAB_MEMPROBE_EVERY", "0.5"))),
                     name="lab-memprobe", daemon=True).start()


def install(folder: str | Path) -> Path:
    """Write a sitecustomize.py into `folder` that starts the probe in a `streamlit run` process (put `folder` on
    PYTHONPATH, and set LAB_MEMPROBE to the output file)."""
    p = Path(folder) / "sitecustomize.py"
    p.write_text("import sys\nif sys.argv[:2] == ['-m', 'run']:          # python -m streamlit run app.py\n"
                 f"    sys.path.insert(0, {ROOT!r})\n    import devkit.memprobe as _m\n    _m.start()\n")
    return p
