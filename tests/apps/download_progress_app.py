"""The page side of a hub download, for tests/test_download_progress.py: app_pages.opening.with_download_progress runs
a fake model load that drives the hub's tqdm bars (tests/test_download_progress.py: drive_like_snapshot_download)
and draws each state it sees into a container (so every drawn bar stays for the test to read)."""
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app_pages.opening import with_download_progress  # noqa: E402
from model.hf.loading import download  # noqa: E402

slot = st.container(key="bars")
folder = with_download_progress("fake/model", lambda: download("fake/model"), slot=slot, every=0.01)
st.write(f"loaded from {folder}")
