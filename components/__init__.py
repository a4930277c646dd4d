"""Streamlit components of the lab (components v2: inline HTML/CSS/JS, no build step, no network)."""
from .live_sampling import live_sampling

__all__ = ["live_sampling"]
