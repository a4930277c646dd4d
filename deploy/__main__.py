"""python -m deploy --replicas N [--port P] [--replica-ports A,B] [--logs DIR] [--upstreams HOST:PORT,...]: N
replicas of the lab and nginx (in front of them and of any replicas on other hosts) under supervisord, until
SIGTERM, SIGINT (Ctrl-C) or SIGHUP (the terminal closed) stops them all. --replicas 0 --upstreams ...: nginx
only, in front of replicas on other hosts."""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import time
from pathlib import Path

from deploy import Options, parse_upstreams, start_supervisor, stop, upstream_addresses


def default_logs() -> Path:
    base = os.environ.get("LAB_LOG_DIR") or os.path.join(os.environ.get("XDG_STATE_HOME")
                                                           or os.path.expanduser("~/.local/state"), "lab", "logs")
    return Path(base)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--port", type=int, default=8080, help="nginx's port (0: a free one)")
    ap.add_argument("--host", default="127.0.0.1", help="nginx's address (127.0.0.1: this machine only)")
    ap.add_argument("--replica-ports", default="", help="the replicas' ports, comma-separated (default: "
                    "--first-port, --first-port + 1, ...)")
    ap.add_argument("--first-port", type=int, default=8501, help="the first replica's port (0: free ports)")
    ap.add_argument("--logs", type=Path, default=None, help="folder for every program's log, kept after stop "
                    "(default $LAB_LOG_DIR or ~/.local/state/lab/logs)")
    ap.add_argument("--log-max-mb", type=int, default=10, help="rotate a log at this size")
    ap.add_argument("--log-backups", type=int, default=5, help="rotated logs kept per program")
    ap.add_argument("--run-dir", type=Path, default=None, help="folder for the generated configs and "
                    "supervisord's socket (default: a temporary one, removed on stop)")
    ap.add_argument("--health-every", type=float, default=5.0, help="seconds between health checks")
    ap.add_argument("--health-timeout", type=float, default=3.0, help="seconds a replica has to answer")
    ap.add_argument("--health-fails", type=int, default=3, help="failed checks in a row that mean 'hung'")
    ap.add_argument("--health-grace", type=float, default=60.0, help="seconds after a start before checks count")
    ap.add_argument("--start-retries", type=int, default=20, help="supervisor's start retries (back-off 1, 2, 3 "
                    "... s); after them the health program keeps trying, with a log line")
    ap.add_argument("--stop-wait", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL on stop")
    ap.add_argument("--upstreams", default="", help="replicas on other hosts for nginx, HOST:PORT comma-separated "
                    "(run them with --server.websocketPingInterval 2, e.g. python -m deploy --replica-address "
                    "0.0.0.0 there); with --replicas 0 this host runs nginx only")
    ap.add_argument("--replica-address", default="127.0.0.1", help="the address this host's replicas listen on "
                    "(0.0.0.0 or this host's address: for an nginx on another host)")
    ap.add_argument("--ws-ping", type=int, default=2, help="seconds between the replicas' websocket pings")
    ap.add_argument("--ws-timeout", type=float, default=5.0, help="seconds without a byte from a replica before "
                    "nginx closes a websocket (the browser reconnects, to another replica if that one is gone); "
                    "more than --ws-ping")
    ap.add_argument("--connect-timeout", type=float, default=1.0, help="seconds nginx waits for a replica to "
                    "accept a connection before it tries the next one")
    ap.add_argument("--fail-timeout", type=float, default=10.0, help="seconds a replica that failed stays out of "
                    "nginx's rotation")
    a = ap.parse_args(argv)
    try:
        upstreams = parse_upstreams(a.upstreams)
    except ValueError as e:
        ap.error(str(e))
    if a.replicas < 0 or (a.replicas == 0 and not upstreams):
        ap.error("--replicas 0 needs --upstreams (nginx must have a replica to send students to)")
    if a.ws_timeout <= a.ws_ping:
        ap.error("--ws-timeout must be longer than --ws-ping (or every idle websocket is closed)")
    o = Options(replicas=a.replicas, port=a.port, host=a.host,
                replica_ports=[int(p) for p in a.replica_ports.split(",") if p.strip()],
                first_port=a.first_port, logs=a.logs or default_logs(), log_max_mb=a.log_max_mb,
                log_backups=a.log_backups, health_every=a.health_every, health_timeout=a.health_timeout,
                health_fails=a.health_fails, health_grace=a.health_grace, start_retries=a.start_retries,
                stop_wait=a.stop_wait, upstreams=upstreams, replica_address=a.replica_address, ws_ping=a.ws_ping,
                ws_timeout=a.ws_timeout, connect_timeout=a.connect_timeout, fail_timeout=a.fail_timeout)
    got: list[int] = []

    def on_signal(signum, _frame):
        got.append(signum)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    proc, run, logs, ports, port = start_supervisor(o, a.run_dir)
    ups = upstream_addresses(o, ports)
    print(f"lab at http://{a.host}:{port}  ({len(ups)} replica{'s' if len(ups) != 1 else ''}: {', '.join(ups)}; "
          f"supervisord pid {proc.pid}; logs in {logs}; configs in {run}; "
          f"status: supervisorctl -c {run / 'supervisord.conf'} status)", flush=True)
    try:
        while not got and proc.poll() is None:
            time.sleep(0.2)
    finally:
        why = signal.Signals(got[0]).name if got else f"supervisord exited with {proc.returncode}"
        print(f"{why}: stopping nginx, the replicas and the health check (logs kept in {logs})", flush=True)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)                   # one stop at a time
        stop(proc, grace=o.stop_wait + 20)
        if a.run_dir is None:
            shutil.rmtree(run, ignore_errors=True)
    return 0 if got else 1


if __name__ == "__main__":
    raise SystemExit(main())
