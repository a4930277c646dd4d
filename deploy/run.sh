#!/bin/sh
# N replicas of the lab behind nginx on this machine: deploy/run.sh [N] [nginx port]
cd "$(dirname "$0")/.." && exec python -m deploy --replicas "${1:-2}" --port "${2:-8080}"
