"""What a page says while a model opens: the spinner's words (a hub id may be downloaded first) and a hub download's
progress (bytes and files) drawn by the script thread while a helper thread loads. Used by common.load_or_stop."""
from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from app_pages.common import md_escape, trained


def from_hub(name: str, path: str) -> bool:
    """Whether opening `name` may download from the Hugging Face hub (not a built-in, a trained model, a folder)."""
    import os

    from model import builtin_names

    return not (path in builtin_names() or name in trained() or os.path.isdir(path))


def download_words(name: str, p) -> str:
    """The line under the download's progress bar (p: model.hf.loading.DownloadProgress)."""
    if not p.total:
        return f"Asking the Hugging Face hub for the files of {md_escape(name[:80])}…"
    return (f"Downloading {md_escape(name[:80])} from the Hugging Face hub: {p.done / 1e6:,.1f} MB of the "
            f"{p.total / 1e6:,.1f} MB started so far; {p.files_done} of {p.files} files done.")


def with_download_progress(name: str, work: Callable[[], Any], slot=None, every: float = 0.2) -> Any:
    """work() (a model load that may download from the hub) in a helper thread, while this script thread shows the
    hub's own progress (bytes and files) in `slot` (a new st.empty() by default), cleared at the end. Errors in
    work() are raised here. Only this thread draws: the hub reports from its download threads to a plain list."""
    import threading
    from concurrent.futures import Future

    from model.hf.loading import download_progress

    latest: list = []
    done: Future = Future()

    def run() -> None:
        try:
            with download_progress(latest.append):
                done.set_result(work())
        except BaseException as e:            # noqa: BLE001 - handed to the script thread
            done.set_exception(e)

    threading.Thread(target=run, name="lab-hub-download", daemon=True).start()
    slot = st.empty() if slot is None else slot
    shown = None
    try:
        while True:
            try:
                return done.result(timeout=every)
            except TimeoutError:
                pass
            finally:
                if latest and latest[-1] is not shown:      # drawn when it changed, and once more at the end
                    shown = latest[-1]
                    slot.progress(shown.fraction, text=download_words(name, shown))
    finally:
        slot.empty()


def opening_words(name: str, path: str) -> str:
    """What the spinner says while a model opens: a hub id may be downloaded first, which can take minutes."""
    import os

    from model import builtin_names
    from model.hf.loading import offline

    shown = md_escape(name[:80])
    if path in builtin_names() or name in trained() or os.path.isdir(path):
        return f"Opening {shown}…"
    if offline():
        return f"Opening {shown} from this server's Hugging Face cache (offline mode: the hub is not asked)…"
    return (f"Opening {shown}: from this server's Hugging Face cache, or downloading it from the Hugging Face hub "
            "if it is not there yet (a first download can take minutes)…")
