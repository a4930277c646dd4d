"""The lessons on a page: the lesson path's stops (`?stop=N`, opened from the home page or a banner: a stop starts
on its own model and settings and shows what to say there, with links to the previous and next stops), and each
page's "Try:" hints, lessons from model/lessons.py checked on the model they name."""
from __future__ import annotations

import streamlit as st

from app_pages.address import reset_settings
from app_pages.registry import LESSON, Stop

def current(page: str) -> tuple[int, Stop] | None:
    """The stop this address opens on this page (0-based), or None."""
    raw = st.query_params.get("stop")
    try:
        i = int(raw) - 1
        stop = LESSON[i]
    except (TypeError, ValueError, IndexError):
        return None
    return (i, stop) if i >= 0 and stop.page == page else None


def open_stop(page: str) -> None:
    """On arriving at a stop, every page setting goes back to its default (no `layer` left over from another page),
    and the stop's own come from its link. Done once per arrival, so the class can then move them."""
    got = current(page)
    arrived = None if got is None else (page, got[0])
    if arrived is not None and st.session_state.get("_stop_opened") != arrived:
        reset_settings()
    st.session_state["_stop_opened"] = arrived


def banner(page: str) -> None:
    """On a lesson stop, what to say there and links to the previous and next stops."""
    got = current(page)
    if got is None:
        return
    i, stop = got
    with st.container(border=True):
        st.markdown(f"**Lesson, stop {i + 1} of {len(LESSON)}: {stop.title}** · about {stop.minutes} min  \n{stop.say}")
        a = b = st.container(horizontal=True, gap="medium")      # links as wide as their labels, never cut
        if i > 0:
            a.page_link(f"app_pages/{LESSON[i - 1].page}.py", label=f"Previous: {LESSON[i - 1].title}",
                        icon=":material/arrow_back:", query_params={**LESSON[i - 1].params, "stop": str(i)})
        if i + 1 < len(LESSON):
            b.page_link(f"app_pages/{LESSON[i + 1].page}.py", label=f"Next: {LESSON[i + 1].title}",
                        icon=":material/arrow_forward:", query_params={**LESSON[i + 1].params, "stop": str(i + 2)})


def hints(page: str, m: LabModel, head=None) -> None:
    """What this page shows about this model: each line is a lesson in model/lessons.py whose check a test runs
    on the model it names, so a hint only appears with the model it is true for. A button loads its sentence.
    In an expander; in projector mode behind a button in the page's heading row (`head`, from common.intro)."""
    from app_pages.common import md_escape, presenting, text, tokens_line, use_text
    from model.teaching import lessons

    found = lessons.lessons_for(page, m.name)
    if not found:
        return
    label = f"Try: what {md_escape(m.name)} shows here ({len(found)})"
    in_head = head is not None and presenting()         # a short label: the heading's row holds it at 1280 px
    box = head.popover(f"Try ({len(found)})", icon=":material/lightbulb:") if in_head else \
        st.expander(label, expanded=len(found) <= 3 and not presenting())
    with box:
        if in_head:
            st.markdown(f"**{label}**")
        for i, lesson in enumerate(found):
            # in the heading's popover (as wide as its text) each button goes under its line, never cut
            a, b = (st.container(), st.container()) if in_head else st.columns([3, 1], vertical_alignment="center")
            if page == "patching":          # this page reads its own two fields, not the sidebar's text
                pair = tokens_line([lesson.text]) + (f" / {tokens_line([lesson.contrast])}" if lesson.contrast else "")
                a.markdown(f"{pair} — {md_escape(lesson.claim)}")
                if (st.session_state.get("clean"), st.session_state.get("corrupt")) != (lesson.text, lesson.contrast) \
                        and lesson.contrast:
                    b.button("Use these two texts", key=f"lesson_{page}_{i}", on_click=use_pair,
                             args=(lesson.text, lesson.contrast))
                continue
            a.markdown(f"{tokens_line([lesson.text])} — {md_escape(lesson.claim)}")
            if lesson.text != text():
                b.button("Use this sentence", key=f"lesson_{page}_{i}", on_click=use_text, args=(lesson.text,))


def use_pair(clean: str, corrupted: str) -> None:
    """The patching page's two texts (bound to `?clean=` and `?corrupt=`)."""
    st.session_state["clean"] = clean
    st.session_state["corrupt"] = corrupted


def example_for(m: LabModel, page: str = "home") -> str | None:
    """A text this model knows (the page's own default), for the 'use a sentence it knows' button."""
    from model.teaching import lessons

    return lessons.default_text(page, m.name)
