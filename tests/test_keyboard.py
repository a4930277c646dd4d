"""The lesson path with the keyboard alone, at 1280x720 (a projector): from the home page's first stop link to the
last stop, by Tab, Shift+Tab and Enter only, and at every element the keyboard focuses on the way, a focus that can
be seen (a computed outline or box-shadow on it or, where its widget hides the input itself (radio buttons, switches,
slider thumbs), on the nearest ancestor that is drawn) and that is on the screen."""
import os
from pathlib import Path

import pytest

from app_pages.registry import LESSON
from devkit.browser import CHROMIUM, browser_page, serve_app, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                                 reason=f"no Chromium at {CHROMIUM} (run tests/install_system.sh)")]

MAX_TABS = 120          # a stop's Next link is far fewer Tabs away; more means the walk is lost

# What the keyboard has focused, looked through same-origin frames (a component's own document), and whether its
# focus is visible: a ring (outline with a width, or a box-shadow) on the element, or, for an input drawn invisible
# by its widget (radio, checkbox, switch), on the element the widget draws in its place; and its box on the screen.
FOCUSED_JS = """() => {
  let el = document.activeElement, doc = document;  // doc: for the view's size
  for (;;) {                        // into components: a same-origin frame's document, a shadow root
    if (el && el.tagName === 'IFRAME') {
      try { doc = el.contentDocument; el = doc.activeElement; continue; } catch (e) { break; }
    }
    if (el && el.shadowRoot && el.shadowRoot.activeElement) { el = el.shadowRoot.activeElement; continue; }
    break;
  }
  if (!el || el === doc.body || el === doc.documentElement) return null;
  const ring = e => {
    const cs = getComputedStyle(e);
    const outline = cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) > 0;
    const shadow = cs.boxShadow && cs.boxShadow !== 'none';
    return outline || shadow ? (outline ? `outline ${cs.outlineStyle} ${cs.outlineWidth}` : `box-shadow ${cs.boxShadow}`)
                             : null;
  };
  const invisible = e => {   // drawn nowhere: itself or an ancestor transparent, clipped away, or under 2 px and
    for (let self = true; e && e !== doc.body; e = e.parentElement, self = false) {   // (an ancestor) cutting its overflow
      const cs = getComputedStyle(e), r = e.getBoundingClientRect();
      const tiny = r.width < 2 || r.height < 2;
      if (cs.opacity === '0' || cs.clipPath !== 'none' || (cs.clip && cs.clip !== 'auto') ||
          (tiny && (self || cs.overflow !== 'visible'))) return true;
    }
    return false;
  };
  let shown = el, how = ring(el);
  if (invisible(el) && el.tagName === 'INPUT') {   // the widget draws something else: the nearest ancestor drawn
    shown = el.parentElement;
    while (shown && shown !== doc.body && invisible(shown)) shown = shown.parentElement;
    how = shown && shown !== doc.body ? ring(shown) : null;
  }
  const r = shown.getBoundingClientRect();
  const view = doc.defaultView;
  const inView = r.width > 0 && r.height > 0 && r.bottom > 0 && r.right > 0 && r.top < view.innerHeight &&
                 r.left < view.innerWidth;
  const text = (el.getAttribute('aria-label') || el.innerText || el.value || el.getAttribute('title') || '')
      .replace(/\\s+/g, ' ').trim().slice(0, 60);
  return {tag: el.tagName, text, href: el.getAttribute('href') || '', ring: how, inView,
          testid: (el.closest('[data-testid]') || {dataset: {}}).dataset.testid || '',
          box: [r.left, r.top, r.width, r.height].map(Math.round)};
}"""


def url_stop(page) -> int | None:
    from urllib.parse import parse_qs, urlparse

    got = parse_qs(urlparse(page.url).query).get("stop")
    return int(got[0]) if got else None


def tab_until(page, found, key: str = "Tab", where: str = "") -> dict:
    """Press `key` until found(focused) holds, checking every focused element on the way; the one found."""
    bad = []
    for _ in range(MAX_TABS):
        # no fixed wait after the press (until 2026-12-02: 40 ms, half the test's 41 s): the focus moves during the
        # key's own events, React applies a focus ring's state at the end of that discrete event, and FOCUSED_JS
        # reads computed styles, which forces the style recalculation; a ring that appeared only later would fail
        page.keyboard.press(key)
        f = page.evaluate(FOCUSED_JS)
        if f is None:
            continue
        if not f["ring"] or not f["inView"]:
            bad.append(f)
        if found(f):
            assert not bad, f"{where}: focus not visible or off the screen at:\n" + "\n".join(map(str, bad))
            return f
    raise AssertionError(f"{where}: not reached in {MAX_TABS} presses of {key}"
                         + ("; invisible focus at:\n" + "\n".join(map(str, bad)) if bad else ""))


def arrive(page, stop: int) -> None:
    page.wait_for_function(f"() => new URL(location.href).searchParams.get('stop') === '{stop}'", timeout=60_000)
    page.wait_for_timeout(300)
    wait_idle(page, 180_000)


def test_the_lesson_path_is_walkable_with_the_keyboard_and_focus_is_always_visible():
    with serve_app() as url, browser_page(1280, 720) as page:
        page.goto(url + "/", wait_until="domcontentloaded", timeout=180_000)
        wait_idle(page, 180_000)
        tab_until(page, lambda f: "stop=1" in f["href"] and f["text"].startswith("1."), where="home")
        page.keyboard.press("Enter")
        arrive(page, 1)
        for stop in range(1, len(LESSON)):
            nxt = LESSON[stop]
            got = tab_until(page, lambda f: "Next: " in f["text"], where=f"stop {stop}")
            assert nxt.title in got["text"] and f"stop={stop + 1}" in got["href"], got
            page.keyboard.press("Enter")
            arrive(page, stop + 1)
            assert url_stop(page) == stop + 1
        last = len(LESSON)
        prev = tab_until(page, lambda f: "Previous: " in f["text"], where=f"stop {last}")
        assert LESSON[last - 2].title in prev["text"]
        tab_until(page, lambda f: True, where=f"stop {last}, one further")           # on past it ...
        back = tab_until(page, lambda f: "Previous: " in f["text"], key="Shift+Tab",
                         where=f"stop {last}, back")                                  # ... and back by Shift+Tab
        assert back["href"] == prev["href"]
        page.keyboard.press("Enter")
        arrive(page, last - 1)
