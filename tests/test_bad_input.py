"""Bad input on every page: a clear message, never a traceback, and a user's string never read as markup.

The matrix: every page x {empty, whitespace, 5,000 words, 100,000 characters, emoji, right-to-left, combining
marks, NUL, lone surrogate, markdown, HTML} as the text; unknown and odd model ids; out-of-range numbers in a
link; markdown and HTML through both link parameters (?model=, ?text=).
"""
import re

import pytest
from streamlit.testing.v1 import AppTest

from app_pages.registry import KEYS as PAGES
from conftest import ROOT, run_page, slow_except

pytestmark = pytest.mark.apptest

MD = "x` ![p](http://example.invalid/p.png) [click](http://example.invalid/) `y"
HTML = "<img src=http://example.invalid/h.png onerror=alert(1)><a href='http://example.invalid/'>a</a>"
TEXTS = {
    "empty": "", "whitespace": "   \n\t ", "5000 words": "the cat " * 2500, "100000 chars": "a" * 100_000,
    "emoji": "the cat 🐈‍⬛ ate 🍯", "rtl": "القط الأسود the cat", "combining": "the ca\u0301t a\u0308te",
    "nul": "the cat\x00 ate", "surrogate": "the cat \ud800 ate", "markdown": MD, "html": HTML,
}
MODELS = {"unknown id": "no-such-model-xyz", "path": "../../etc", "long": "m" * 300, "markdown": MD, "html": HTML}
RAW_HTML = re.compile(r"(?<!\\)<(img|a |script|iframe)", re.I)  # a tag not escaped as \<
CODE_SPAN = re.compile(r"`[^`]*`")
LIVE_LINK = re.compile(r"(?<!\\)!?\[[^\]]*(?<!\\)\]\((?!#)")      # [x](url) or ![x](url) not escaped


def open_at(page: str | None, state: dict | None = None, query: dict | None = None) -> AppTest:
    """lab.py with this page (None: home) opened directly, as by its link: one run, the query and state as given."""
    at = AppTest.from_file(str(ROOT / "lab.py"), default_timeout=120)
    for k, v in (state or {}).items():
        at.session_state[k] = v
    if query:
        at.query_params.update(query)
    return run_page(at, page)


def bodies(at) -> list[str]:
    """Every markdown source the page sent (text, captions, alerts), where user strings could be interpreted."""
    out = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "title", "subheader", "header"):
        out += [str(e.value) for e in getattr(at, kind)]
    return out


def messages(at) -> list[str]:
    return [str(e.value) for kind in ("error", "warning", "info") for e in getattr(at, kind)]


def assert_nothing_interpreted(at, where: str) -> None:
    for b in bodies(at):
        b = CODE_SPAN.sub("", b)                                    # inside `code` nothing is interpreted
        assert not LIVE_LINK.search(b), f"{where}: a live markdown link or image in {b[:200]!r}"
        assert not RAW_HTML.search(b), f"{where}: raw HTML in {b[:200]!r}"


@pytest.mark.parametrize("page", slow_except(["home"] + PAGES, {"attention", "translate"}))
def test_every_bad_text_gives_a_message_and_no_traceback(page):
    for name, text in TEXTS.items():
        at = open_at(None if page == "home" else page, {"text": text})
        where = f"{page} / {name}"
        assert not at.exception, (where, [e.message for e in at.exception])
        if name in ("empty", "whitespace", "5000 words", "100000 chars", "nul", "surrogate") and page not in (
                "positional", "patching"):                          # these two do not read the sidebar's text
            assert messages(at), f"{where}: no message"
        assert_nothing_interpreted(at, where)


@pytest.mark.parametrize("page", slow_except(["home", "attention", "sampling", "translate"], {"sampling"}))
def test_unknown_and_odd_model_ids_give_one_clear_error(page):
    for name, mid in MODELS.items():
        at = open_at(None if page == "home" else page, {"model_choice": "Other Hugging Face id or local folder…",
                                                        "model_custom": mid})
        where = f"{page} / {name}"
        assert not at.exception, (where, [e.message for e in at.exception])
        assert at.error and "Could not open" in at.error[0].value, (where, messages(at))
        assert_nothing_interpreted(at, where)


@pytest.mark.parametrize("page", slow_except(PAGES, {"sampling"}))
def test_markdown_and_html_in_both_link_parameters_are_shown_as_text(page):
    for payload in (MD, HTML):
        at = open_at(page, query={"model": payload, "text": payload})
        assert not at.exception, [e.message for e in at.exception]
        assert_nothing_interpreted(at, f"{page} / link")
        at = open_at(page, query={"text": payload})
        assert not at.exception, [e.message for e in at.exception]
        assert_nothing_interpreted(at, f"{page} / link text")


@pytest.mark.parametrize("page,query", [
    ("sampling", {"t": "99"}), ("sampling", {"k": "99999"}), ("sampling", {"seed": "-1"}),
    ("sampling", {"p": "nan"}), ("attention", {"layer": "99"}), ("attention", {"head": "x"}),
    ("positional", {"d": "7"}), ("positional", {"dims": "1,2,99999"}), ("translate", {"step": "1000"}),
])
def test_out_of_range_numbers_in_a_link_are_named_and_ignored(page, query):
    at = open_at(page, query=query)
    assert not at.exception, [e.message for e in at.exception]
    key = next(iter(query))
    assert any("not valid" in w and key in w for w in messages(at)), messages(at)


URL = "http://evil.invalid/x"
LINKY = f"see {URL} and HTTPS://evil.invalid/y www.evil.invalid me@evil.invalid"
AUTOLINKABLE = re.compile(r"(?i)(https?://|www\.|[\w.+-]@[a-z0-9])")   # what GFM markdown turns into a link


def assert_no_autolink(at, where: str) -> None:
    """No markdown the page sent contains a bare address that Streamlit's markdown would make a live link (a
    backslash escape does not stop it; code spans are never linked)."""
    for b in bodies(at):
        plain = CODE_SPAN.sub("", b).replace("\\", "")
        assert not AUTOLINKABLE.search(plain), f"{where}: an autolinkable address in {b[:200]!r}"


@pytest.mark.parametrize("page", slow_except(["home"] + PAGES, {"attention"}))
def test_addresses_in_link_parameters_never_become_links(page):
    """The warnings that quote a user's value: the model that cannot be opened (?model=), the unknown words of
    the text (?text=), a link setting that is not valid (?t=, ?layer=, ...): none of them gives a live link."""
    queries = [{"model": URL}, {"text": LINKY}, {"t": URL, "layer": URL, "head": URL, "k": URL, "d": URL, "step": URL}]
    for query in queries:
        at = open_at(None if page == "home" else page, query=query)
        where = f"{page} / {next(iter(query))}"
        assert not at.exception, (where, [e.message for e in at.exception])
        assert_no_autolink(at, where)
        if "model" in query and page in ("home", "attention", "sampling"):      # pages that open the sidebar model
            assert any("evil" in m for m in messages(at)), (where, messages(at))   # the value is quoted, defused


def test_md_escape_breaks_every_autolink_and_keeps_the_text_readable():
    from app_pages.common import WORD_JOINER, md_escape

    out = md_escape(LINKY)
    assert not AUTOLINKABLE.search(out.replace("\\", ""))
    assert out.replace("\\", "").replace(WORD_JOINER, "") == LINKY       # the same characters a person reads
