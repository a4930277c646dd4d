"""The replicas' health check, run by supervisord next to them (see deploy/__init__.py).

    python -m deploy.health --socket RUN/supervisor.sock --ports 8501,8502 [--every 5 --timeout 3 --fails 3]

Every --every seconds it asks each RUNNING replica for /_stcore/health (at most --timeout s). A
replica that fails --fails checks in a row, once it has been up --grace s, is hung (SIGSTOP'd, a
busy loop, a deadlock): its whole process group is killed with SIGKILL and supervisord, which sees
it exit, starts it again. A program that supervisord gave up on (FATAL, after its start retries)
is started again after a pause that doubles from 10 s to 5 min, with a line in this program's log
each time: nothing is ever given up on silently. Every action is one line on stdout (supervisor's
log for this program, rotated).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import urllib.request

RUNNING, FATAL = 20, 200                      # supervisor's process state codes


def answers(port: int, timeout: float, address: str = "127.0.0.1") -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/_stcore/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def say(text: str) -> None:
    print(time.strftime("%Y-%m-%d %H:%M:%S"), text, flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--socket", required=True)
    ap.add_argument("--ports", required=True, help="the replicas' ports, comma-separated")
    ap.add_argument("--address", default="127.0.0.1", help="the address the replicas answer on")
    ap.add_argument("--every", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--fails", type=int, default=3)
    ap.add_argument("--grace", type=float, default=60.0)
    a = ap.parse_args(argv)
    sys.path.insert(0, os.getcwd())
    from deploy import server_proxy

    rpc = server_proxy(a.socket).supervisor
    ports = [int(p) for p in a.ports.split(",") if p]
    fails = {p: 0 for p in ports}
    pause: dict[str, float] = {}                 # program -> seconds before the next start after FATAL
    retry_at: dict[str, float] = {}
    killed: set[int] = set()                     # pids already killed (supervisord may not have reaped them yet)
    say(f"health check of {len(ports)} replicas every {a.every:g} s (timeout {a.timeout:g} s, {a.fails} failures "
        f"in a row = hung, {a.grace:g} s grace after a start)")
    while True:
        t0 = time.monotonic()
        try:
            infos = {i["name"]: i for i in rpc.getAllProcessInfo()}
        except OSError as e:
            say(f"cannot reach supervisord ({e}); exiting")
            return
        for name, info in infos.items():
            if name == "health":
                continue
            if info["state"] == FATAL:
                now = time.monotonic()
                wait = pause.get(name, 10.0)
                if name not in retry_at:
                    retry_at[name] = now + wait
                    why = info["spawnerr"] or "see its log"
                    say(f"{name} is FATAL (supervisord gave up after its start retries: {why}); "
                        f"starting it again in {wait:.0f} s")
                elif now >= retry_at[name]:
                    del retry_at[name]
                    pause[name] = min(300.0, wait * 2)
                    say(f"starting {name} again")
                    try:
                        rpc.startProcess(name, False)
                    except Exception as e:                                   # noqa: BLE001  (logged, retried)
                        say(f"could not start {name}: {e}")
            elif info["state"] == RUNNING:
                retry_at.pop(name, None)
                if info["now"] - info["start"] > 600:
                    pause.pop(name, None)                                    # stable again: reset the pause
        for p in ports:
            info = infos.get(f"replica-{p}")
            if (info is None or info["state"] != RUNNING or info["now"] - info["start"] < a.grace
                    or info["pid"] in killed):
                fails[p] = 0
                continue
            if answers(p, a.timeout, a.address):
                fails[p] = 0
                continue
            fails[p] += 1
            say(f"replica-{p} (pid {info['pid']}) did not answer /_stcore/health within {a.timeout:g} s "
                f"({fails[p]} of {a.fails})")
            if fails[p] >= a.fails:
                fails[p] = 0
                say(f"replica-{p} is hung: killing its process group (pid {info['pid']}); supervisord restarts it")
                killed.add(info["pid"])
                try:
                    os.killpg(info["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(max(0.0, a.every - (time.monotonic() - t0)))


if __name__ == "__main__":
    main()
