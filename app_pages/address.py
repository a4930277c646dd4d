"""The address is the view. Page settings are Streamlit widgets bound to the URL (`bind="query-params"`):
Streamlit reads `?key=` when a widget first appears and writes every change back (left out at the default),
so a copied link reopens the view. This module adds only what binding does not do, each said where it is done:
naming a bad value in a link (Streamlit drops it silently), and the few settings binding cannot carry.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import streamlit as st

from model.nets.sampling import SamplingSettings

BIND = "query-params"


def _esc(text: Any) -> str:
    from app_pages.common import md_escape

    return md_escape(text)


def parse(raw: str | list[str], default: Any, options: Sequence | None = None, lo=None, hi=None,
          commas: bool = True) -> Any:
    """A link's value for a setting like `default`, checked against its options or range; ValueError names why.
    Lists come as repeated parameters (`?dims=0&dims=1`, as Streamlit writes them), or comma-separated where
    `commas` (the settings kept by hand write them so)."""
    def one(x: str) -> Any:
        if options is not None:
            match = [o for o in options if str(o) == x]
            if not match:
                raise ValueError("not among the choices")
            return match[0]
        if isinstance(default, bool):
            if x.lower() not in ("true", "false"):
                raise ValueError("expected true or false")
            return x.lower() == "true"
        v = int(x) if isinstance(default, int) else float(x) if isinstance(default, float) else x
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("not a number")
        if lo is not None and v < lo or hi is not None and v > hi:
            raise ValueError(f"outside {lo}–{hi}")
        return v

    if isinstance(default, list):
        parts = [raw] if isinstance(raw, str) else raw
        return [one(x) for part in parts for x in (part.split(",") if commas else [part]) if x.strip()]
    return one(raw[-1] if isinstance(raw, list) else raw)


def name_bad(key: str, raw, default: Any, options=None, lo=None, hi=None, commas: bool = True) -> bool:
    """Warn, naming it, when a link's value for `key` is not valid; True when it was bad."""
    try:
        parse(raw, default, options, lo, hi, commas)
        return False
    except (ValueError, TypeError) as e:
        shown = raw if isinstance(raw, str) else ",".join(raw)
        st.warning(f"The link's setting {_esc(key)}={_esc(repr(shown[:40]))} is not valid ({_esc(e)}) and was ignored.")
        return True


def _valid(v: Any, options, lo, hi) -> bool:
    if options is not None:
        return all(x in options for x in v) if isinstance(v, list) else v in options
    return not isinstance(v, (int, float)) or isinstance(v, bool) or (lo is None or v >= lo) and (hi is None or v <= hi)


def remember(key: str) -> None:
    """This session has this page setting (a lesson stop resets those it does not name)."""
    st.session_state.setdefault("_settings", set()).add(key)


def bound(key: str, default: Any, *, options: Sequence | None = None, lo=None, hi=None, arg: str | None = None) -> dict:
    """Arguments that bind a widget to `?key=`, with its default:
    `st.selectbox("Layer", opts, **bound("layer", 3, options=opts))`. `arg` is the widget's name for its default
    (guessed: "default" for a list, "index" with options, else "value"; a select_slider says "value")."""
    raw = st.query_params.get_all(key)
    if raw:                                 # Streamlit drops a bad bound value without a word: name it here
        name_bad(key, raw, default, options, lo, hi, commas=False)
    if key in st.session_state and not _valid(st.session_state[key], options, lo, hi):
        del st.session_state[key]           # kept from another model's choices (e.g. head 4 of 2): the default
    remember(key)
    arg = arg or ("default" if isinstance(default, list) else "index" if options is not None else "value")
    return {"key": key, "bind": BIND, arg: list(options).index(default) if arg == "index" else default}


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    return ",".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)


def keep_in_url(key: str, value: str | None) -> None:
    """Write `?key=value` (remove it for None) and remember that this session wrote it."""
    if st.query_params.get(key) != value:
        if value is None:
            del st.query_params[key]
        else:
            st.query_params[key] = value
    st.session_state[f"_url_{key}"] = value


def labelled(key: str, default: Any, *, options: Sequence | None = None, lo=None, hi=None) -> dict:
    """By hand, for what binding cannot carry: a widget that shows labels other than its values (binding would
    write the label, `?q=6%3A+it`, not `?q=6`) and the browser-side sliders (a component has no `bind`).
    A link's value this session did not write sets the setting (checked); the address then follows it.
    A key is kept by hand on every page or bound on every page, never both: Streamlit refuses writes to a bound key."""
    raw = st.query_params.get(key)
    if raw is not None and raw != st.session_state.get(f"_url_{key}"):
        if not name_bad(key, raw, default, options, lo, hi):
            st.session_state[key] = parse(raw, default, options, lo, hi)
            st.session_state["_url_applied"] = st.session_state.get("_url_applied", 0) + 1
    cur = st.session_state.get(key, default)
    if not _valid(cur, options, lo, hi):
        cur = [x for x in cur if x in options] if isinstance(cur, list) else default
    st.session_state[key] = cur
    remember(key)
    keep_in_url(key, None if cur == default else _fmt(cur))
    return {"key": key}


def setting(key: str, default: Any, **kw) -> Any:
    """A setting in the address that is no Streamlit widget (a browser-side slider): its current value."""
    labelled(key, default, **kw)
    return st.session_state[key]


def set_setting(key: str, value: Any, default: Any) -> None:
    st.session_state[key] = value
    keep_in_url(key, None if value == default else _fmt(value))


def link_version() -> int:
    """Counts the link values applied this session: a browser-side control keyed with it starts over with them."""
    return st.session_state.get("_url_applied", 0)


def reset_settings() -> None:
    """Every page setting this session has goes back to its default (a lesson stop then takes its own from its
    link). Streamlit keeps a bound widget's value when its page is left, so without this a `layer` set on one page
    would open the next page that has a `layer`."""
    for key in st.session_state.get("_settings", set()):
        st.session_state.pop(key, None)
        st.session_state.pop(f"_url_{key}", None)


def number(label: str, key: str, default: int, lo: int, hi: int, container=None, **kw) -> int:
    """A whole-number box in the address; a link's value out of range is named (and the box keeps its range)."""
    container = container or st
    return int(container.number_input(label, min_value=lo, max_value=hi, step=1, **bound(key, default, lo=lo, hi=hi),
                                      **kw))


def sampling_controls(prefix: str, vocab_size: int, default: SamplingSettings = SamplingSettings(), cols=None,
                      **kw) -> SamplingSettings:
    """Temperature, top-k and top-p as three widgets in the address (`?{prefix}t=`, `k`, `p`), with the ranges,
    steps and labels of SamplingSettings."""
    T, K, P = SamplingSettings.KNOBS
    cols = cols or st.columns(3)
    t = cols[0].slider(T.label, T.lo, T.hi, step=T.step, help=T.hint,
                       **bound(prefix + T.key, default.temperature, lo=T.lo, hi=T.hi), **kw)
    k = number(K.label, prefix + K.key, default.top_k, K.lo, vocab_size, container=cols[1], help=K.hint, **kw)
    p = cols[2].slider(P.label, P.lo, P.hi, step=P.step, help=P.hint,
                       **bound(prefix + P.key, default.top_p, lo=P.lo, hi=P.hi), **kw)
    return SamplingSettings.clamped(vocab_size, float(t), k, float(p))
