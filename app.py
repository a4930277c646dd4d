"""Transformer & LSTM lab: see what happens inside small Transformers and LSTMs, live.

    streamlit run app.py

This file is the server: Streamlit's `st.App` serving `lab.py` (the navigation, the shared sidebar and the
home page). At start-up, before any browser connects, a background thread imports what the first page needs
(torch, the models, the figures: about 1.5 s on 2 cores), so the first visitor's page does not wait for it
while the browser is still loading the frontend.
"""
from __future__ import annotations

import contextlib
import threading

import streamlit as st


def _import_ahead() -> None:
    from model.store import apply_torch_threads

    apply_torch_threads()     # LAB_TORCH_THREADS (default 1): script threads started after this use it
    import app_pages.common  # noqa: F401  (imports model, hence torch)
    import viz.attention  # noqa: F401


@contextlib.asynccontextmanager
async def _lifespan(_app):
    threading.Thread(target=_import_ahead, name="lab-import-ahead", daemon=True).start()
    yield


app = st.App("lab.py", lifespan=_lifespan)
