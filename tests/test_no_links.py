"""No user string becomes a link, checked where links are made: in Chromium, by Streamlit's own markdown.
A page renders the same string raw (the control: it must become links, or this test proves nothing) and escaped
with the lab's md_escape (it must not)."""
from urllib.parse import quote

import pytest

from conftest import ROOT
from devkit.browser import browser_page, serve_app, wait_idle

pytestmark = pytest.mark.browser

LINKY = "see http://evil.invalid/a and HTTPS://evil.invalid/b www.evil.invalid me@evil.invalid"


def test_escaped_user_strings_give_no_links_in_the_browser():
    with serve_app(script=ROOT / "tests" / "apps" / "links_app.py") as url, browser_page() as page:
        page.goto(f"{url}/?s={quote(LINKY)}", wait_until="domcontentloaded")
        wait_idle(page)
        page.wait_for_selector(".st-key-escaped [data-testid='stAlert']", timeout=30_000)
        raw = page.eval_on_selector_all(".st-key-raw a[href]", "els => els.map(e => e.href)")
        escaped = page.eval_on_selector_all(".st-key-escaped a[href]", "els => els.map(e => e.href)")
        text = page.inner_text(".st-key-escaped").replace("\u2060", "")
    assert len(raw) >= 3, raw                       # the control: unescaped, Streamlit links the addresses
    assert escaped == []
    assert "http://evil.invalid/a" in text and "me@evil.invalid" in text   # what a person reads is unchanged
