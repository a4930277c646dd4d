"""Transformer & LSTM lab: see what happens inside small Transformers and LSTMs, live.

    streamlit run app.py

This file is the server: Streamlit's `st.App` serving `lab.py` (the navigation, the shared sidebar and the
home page). At start-up, before any browser connects, a background thread imports what the first page needs
(torch, the models, the figures: about 1.5 s on 2 cores), so the first visitor's page does not wait for it
while the browser is still loading the frontend.

A page's own address (a deep link such as /masks) works as Streamlit serves it, but Streamlit's frontend first
looks for the server under the page's path (/masks/_stcore/health and /masks/_stcore/host-config, two 404s in the
browser's console) before it falls back to the parent path. The page HTML therefore names the server's address for
the frontend (`window.__streamlit.BACKEND_BASE_URL`, which the frontend reads before it connects) on the lab's page
addresses only: the parent of the page's path, so a server under a path prefix keeps it.
"""
from __future__ import annotations

import contextlib
import json
import threading

import streamlit as st
from starlette.middleware import Middleware

from app_pages.registry import KEYS


def _allocator_first() -> dict:
    """glibc's allocator settings (model/serving/memory.py: the mmap threshold, at most 2 arenas) in the main thread,
    before any other thread allocates: arenas that threads created earlier stay. The module is loaded by its path and
    registered under its name: importing the `model` package here would import torch in this thread, whose thread
    count the script threads would then inherit (the start-up thread below sets LAB_TORCH_THREADS first)."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "model.serving.memory"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "model" / "serving" / "memory.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name].apply_malloc_settings()


_MALLOC = _allocator_first()    # LAB_MALLOC_MMAP_MB (default 1), LAB_MALLOC_ARENAS (default 2)
if "error" in _MALLOC:
    import sys

    print(f"{_MALLOC['error']}: the default is used (1 MiB, 2 arenas).", file=sys.stderr, flush=True)


def _import_ahead() -> None:
    import os
    import sys

    from model.serving.store import apply_torch_threads

    n = apply_torch_threads()     # LAB_TORCH_THREADS (default 1): script threads started after this use it
    raw = os.environ.get("LAB_TORCH_THREADS", "").strip()
    if raw and raw.lower() not in ("0", "auto") and not (raw.isdigit() and int(raw) >= 1):
        print(f"LAB_TORCH_THREADS={raw!r} is not a whole number of at least 1, 0 or 'auto' (torch's own default): "
              f"ignored; torch uses {n} thread{'s' if n != 1 else ''}.", file=sys.stderr, flush=True)
    import app_pages.common  # noqa: F401  (imports model, hence torch)
    import viz.attention  # noqa: F401


@contextlib.asynccontextmanager
async def _lifespan(_app):
    threading.Thread(target=_import_ahead, name="lab-import-ahead", daemon=True).start()
    yield


# On /<page> (or /<prefix>/<page>), the server is at the parent path: said before Streamlit's own script runs.
BASE_SCRIPT = ("<script>(function(){var pages=%s,p=location.pathname.replace(/\\/+$/,''),i=p.lastIndexOf('/');"
               "if(pages.indexOf(p.slice(i+1))>=0){window.__streamlit=Object.assign({},window.__streamlit||{},"
               "{BACKEND_BASE_URL:location.origin+p.slice(0,i+1)});}})();</script>") % json.dumps(KEYS)


class PageBaseUrl:
    """ASGI middleware: the page HTML (a GET answered with text/html, not compressed) gets BASE_SCRIPT at the top
    of its <head>; every other request and response passes untouched."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        last = path.rstrip("/").rsplit("/", 1)[-1]
        if scope["type"] != "http" or scope.get("method") != "GET" or "." in last or "/_stcore/" in path \
                or "/static/" in path:
            await self.app(scope, receive, send)                       # not a page: untouched
            return
        # a page's HTML (8 KB) is asked for uncompressed, so that it can be read here
        scope = {**scope, "headers": [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"accept-encoding"]}
        held: dict = {}

        async def rewrite(message) -> None:
            if message["type"] == "http.response.start":
                headers = {k.lower(): v for k, v in message.get("headers", [])}
                if headers.get(b"content-type", b"").startswith(b"text/html") and b"content-encoding" not in headers:
                    held["start"], held["body"] = message, b""
                    return
            elif "start" in held and message["type"] == "http.response.body":
                held["body"] += message.get("body", b"")
                if message.get("more_body"):
                    return
                body = held["body"].replace(b"<head>", b"<head>" + BASE_SCRIPT.encode(), 1)
                start = held.pop("start")
                start["headers"] = [(k, str(len(body)).encode() if k.lower() == b"content-length" else v)
                                    for k, v in start.get("headers", [])
                                    if k.lower() not in (b"etag", b"last-modified")]   # not the file's own version
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, rewrite)


app = st.App("lab.py", lifespan=_lifespan, middleware=[Middleware(PageBaseUrl)])
