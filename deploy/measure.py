"""Figures for `python -m bench --only heal`: how fast replicas under supervisord heal on this machine.

Runs `python -m deploy` with 2 replicas and a fast health check (every 1 s, 2 s timeout, 2 failures, 20 s
grace), then: cold start to every replica and nginx answering; kill -9 of a replica to it answering again;
SIGSTOP of a replica to its restart and to it answering; SIGHUP to the launcher to every process gone.
"""
from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deploy import ROOT, free_port, healthy, server_proxy


def _wait(cond, timeout: float, what: str) -> float:
    t = time.monotonic()
    while not cond():
        if time.monotonic() - t > timeout:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)
    return time.monotonic() - t


def _tree(pid: int) -> set[int]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                kids.setdefault(int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]), []).append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = set(), [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.add(k)
            todo.append(k)
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def heal_rows(kills: int = 3, stops: int = 2, log=print) -> list[tuple[str, str, str]]:
    tmp = Path(tempfile.mkdtemp(prefix="lab-heal-"))
    ports, port = [free_port(), free_port()], free_port()
    cmd = [sys.executable, "-m", "deploy", "--replicas", "2", "--port", str(port), "--replica-ports",
           ",".join(map(str, ports)), "--logs", str(tmp / "logs"), "--run-dir", str(tmp / "run"), "--health-every",
           "1", "--health-timeout", "2", "--health-fails", "2", "--health-grace", "20"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    rows = []
    url = lambda p: f"http://127.0.0.1:{p}"                                          # noqa: E731
    try:
        cold = _wait(lambda: all(healthy(url(p)) for p in ports) and healthy(url(port)), 180, "cold start")
        rows.append(("2 replicas + nginx under supervisord: cold start to all answering", f"{cold:.1f} s", ""))
        rpc = server_proxy(tmp / "run" / "supervisor.sock").supervisor
        name = f"replica-{ports[0]}"
        back = []
        for _ in range(kills):
            old = rpc.getProcessInfo(name)["pid"]
            t = time.monotonic()
            os.kill(old, signal.SIGKILL)
            _wait(lambda: rpc.getProcessInfo(name)["pid"] not in (0, old) and healthy(url(ports[0])), 180, "kill -9")
            back.append(time.monotonic() - t)
        log(f"  kill -9 -> answering: {back}")
        rows.append((f"kill -9 of a replica to it answering again ({kills} runs)",
                     f"median {statistics.median(back):.1f} s ({min(back):.1f}-{max(back):.1f})", ""))
        name = f"replica-{ports[1]}"
        restart, answer = [], []
        for _ in range(stops):
            _wait(lambda: (lambda i: i["now"] - i["start"] > 21)(rpc.getProcessInfo(name)), 120, "grace")
            old = rpc.getProcessInfo(name)["pid"]
            t = time.monotonic()
            os.kill(old, signal.SIGSTOP)
            _wait(lambda: rpc.getProcessInfo(name)["pid"] not in (0, old), 120, "SIGSTOP restart")
            restart.append(time.monotonic() - t)
            _wait(lambda: healthy(url(ports[1])), 180, "SIGSTOP answering")
            answer.append(time.monotonic() - t)
        log(f"  SIGSTOP -> restarted {restart}, answering {answer}")
        rows.append((f"SIGSTOP of a replica (health every 1 s, 2 s timeout, 2 failures) to its restart / to it "
                     f"answering ({stops} runs)", " ; ".join(f"{r:.1f} / {a:.1f} s" for r, a in zip(restart, answer)),
                     ""))
        tree = _tree(proc.pid)
        t = time.monotonic()
        os.kill(proc.pid, signal.SIGHUP)
        proc.wait(90)
        gone = _wait(lambda: not [p for p in tree if _alive(p)], 60, "SIGHUP: every process gone")
        rows.append(("SIGHUP to the launcher to every one of its processes gone",
                     f"{time.monotonic() - t:.1f} s ({len(tree)} processes; the last {gone:.1f} s after the launcher)",
                     "nothing left"))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    rows.append(("(load average during the heal figures)", f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", ""))
    return rows
