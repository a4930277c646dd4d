#!/bin/sh
# Installs Debian's Chromium for the real-browser test, if it is not there yet (needs root or sudo).
command -v chromium >/dev/null 2>&1 && exit 0
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
