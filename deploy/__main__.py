"""python -m deploy --replicas N [--port P] [--replica-ports A,B] [--logs DIR]: N replicas of the lab and
nginx under supervisord, until SIGTERM, SIGINT (Ctrl-C) or SIGHUP (the terminal closed) stops them all."""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import time
from pathlib import Path

from deploy import Options, start_supervisor, stop


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
    a = ap.parse_args(argv)
    o = Options(replicas=a.replicas, port=a.port, host=a.host,
                replica_ports=[int(p) for p in a.replica_ports.split(",") if p.strip()],
                first_port=a.first_port, logs=a.logs or default_logs(), log_max_mb=a.log_max_mb,
                log_backups=a.log_backups, health_every=a.health_every, health_timeout=a.health_timeout,
                health_fails=a.health_fails, health_grace=a.health_grace, start_retries=a.start_retries,
                stop_wait=a.stop_wait)
    got: list[int] = []

    def on_signal(signum, _frame):
        got.append(signum)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    proc, run, logs, ports, port = start_supervisor(o, a.run_dir)
    print(f"lab at http://{a.host}:{port}  ({len(ports)} replica{'s' if len(ports) != 1 else ''} on port"
          f"{'s' if len(ports) != 1 else ''} {', '.join(map(str, ports))}; "
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
