"""The README's page pictures, docs/screenshots/: every page at 1400x1000 (the whole page) and in projector mode at
1280x720 (the first screen), each opened by its own address on a fresh local server (`streamlit run app.py`, a
free port) in headless Chromium.

    python -m devkit.screenshots                    # every picture into docs/screenshots/
    python -m devkit.screenshots --out /tmp/shots   # somewhere else

(The tests look at the same pages by geometry: tests/test_layout.py. Until 2026-12-02 tests/test_browser.py took
these pictures on every test run, with LAB_UPDATE_SCREENSHOTS=1 copying them here: 22 page loads and full-page
PNGs on every CI run that nobody looked at.)
"""
from __future__ import annotations

import argparse
from pathlib import Path

from devkit.browser import PAGES, chromium, fresh_page, open_page, open_url, serve_app

ROOT = Path(__file__).resolve().parent.parent


def take(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with serve_app() as url, chromium() as browser:
        with fresh_page(browser, 1400, 1000) as page:
            for name in PAGES:
                open_page(page, url, name)
                page.wait_for_timeout(500)                    # late fonts
                page.screenshot(path=str(out / f"{name}.png"), full_page=True)
                written.append(out / f"{name}.png")
        with fresh_page(browser, 1280, 720) as page:
            for name in PAGES:
                open_url(page, f"{url}/{PAGES[name]}?present=1")
                page.screenshot(path=str(out / f"projector-{name}.png"), full_page=False)
                written.append(out / f"projector-{name}.png")
    return written


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    for p in take(ap.parse_args(argv).out):
        print(p)


if __name__ == "__main__":
    main()
