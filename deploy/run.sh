#!/bin/sh
# N replicas of the lab and nginx under supervisord on this machine: deploy/run.sh [N] [nginx port] [more flags]
# (python -m deploy --help lists them: --replica-ports, --logs, --health-every ...)
n="${1:-2}"; port="${2:-8080}"; [ $# -gt 0 ] && shift; [ $# -gt 0 ] && shift
cd "$(dirname "$0")/.." && exec python -m deploy --replicas "$n" --port "$port" "$@"
