"""python -m deploy --replicas N [--port P] [--host H]: N replicas behind nginx until Ctrl-C."""
from __future__ import annotations

import argparse
import signal
import time

from deploy import cluster


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--port", type=int, default=8080, help="nginx's port (0: a free one)")
    ap.add_argument("--host", default="127.0.0.1", help="nginx's address (127.0.0.1: this machine only)")
    ap.add_argument("--check-every", type=float, default=5.0, help="seconds between replica health checks")
    a = ap.parse_args(argv)

    def on_term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        with cluster(a.replicas, a.port or None, a.host) as c:
            print(f"lab at {c.url}  ({a.replicas} replicas: "
                  + ", ".join(f":{r.port} pid {r.proc.pid}" for r in c.replicas)
                  + f"; nginx pid {c.nginx.pid}; config {c.workdir / 'nginx.conf'})", flush=True)
            while c.nginx.poll() is None:
                time.sleep(a.check_every)
                for note in c.check():
                    print(note, flush=True)
            print(f"nginx exited with {c.nginx.returncode}; stopping", flush=True)
    except KeyboardInterrupt:
        print("stopping nginx and replicas", flush=True)


if __name__ == "__main__":
    main()
