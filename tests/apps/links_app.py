"""A page that renders one user string three ways, for tests/test_no_links.py: raw (the control: Streamlit's markdown
auto-links it), escaped with the lab's md_escape in a warning, and in a caption."""
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from app_pages.common import md_escape  # noqa: E402

s = st.query_params.get("s", "")
with st.container(key="raw"):
    st.markdown(s)
with st.container(key="escaped"):
    st.warning(f"The link's setting t={md_escape(repr(s))} is not valid and was ignored.")
    st.caption(md_escape(s))
    st.error(f"**Could not open the model “{md_escape(s)}”.**")
