#!/bin/sh
# The system packages the tests use, where they are missing: nginx for the deploy tests (replicas behind nginx,
# hosts in network namespaces; without it those tests skip and say why), and Chromium for the real-browser tests.
#   - where apt-get exists (Debian, Ubuntu): Debian's `chromium` package, /usr/bin/chromium (root or sudo);
#   - else, or if that fails: Playwright's own Chromium, `python3 -m playwright install chromium` (into
#     ~/.cache/ms-playwright; needs the Python packages first: pip install -r requirements-dev.txt).
# The tests use $CHROMIUM if set, else /usr/bin/chromium, else Playwright's (devkit/browser.py, find_chromium).
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ] && command -v apt-get >/dev/null 2>&1; then
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq nginx >/dev/null; } \
        || echo "apt-get could not install nginx: the deploy tests will be skipped (they say why)" >&2
fi
if [ -n "${CHROMIUM:-}" ]; then
    [ -x "$CHROMIUM" ] && exit 0
    echo "CHROMIUM=$CHROMIUM is not an executable" >&2; exit 1
fi
[ -x /usr/bin/chromium ] && exit 0
if command -v apt-get >/dev/null 2>&1; then
    if $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null && [ -x /usr/bin/chromium ]; then
        exit 0
    fi
    echo "apt-get could not install chromium; trying Playwright's own Chromium" >&2
fi
exec python3 -m playwright install chromium
