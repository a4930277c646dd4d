"""Past one process: N Streamlit replicas of the lab behind nginx, on this machine.

    python -m deploy --replicas 2            # or: deploy/run.sh 2
    python -m deploy --replicas 3 --port 8080

Starts N `streamlit run app.py` replicas on free loopback ports, writes an nginx config into a
temporary folder (see deploy/nginx.conf.template) and runs nginx in the foreground in front of
them. Ctrl-C (or SIGTERM) stops nginx and every replica. What nginx does:

- sticky sessions by a cookie (`lab_replica`): a browser's first request goes to the replica with
  the fewest open connections (least_conn: websockets are long-lived, so this counts sessions) and
  the answer sets the cookie to that replica's address; all later requests with the cookie (the
  websocket, /_stcore/upload_file, /media/ files, cached-message fetches) reach that replica, which
  holds the session; if it is down, another replica answers (and the cookie follows). Not
  ip_hash: a whole classroom behind one school NAT would share one replica.
- websocket upgrade for /_stcore/stream, long read timeouts, no buffering.
- /_stcore/health answered by a replica (nginx open source has no active health checks: a replica
  that refuses or times out is marked failed for 10 s and the request goes to the next one); this
  launcher also polls each replica's /_stcore/health and restarts one whose process has exited.

All replicas share one cookie secret (XSRF tokens stay valid whichever replica signed them), and
each gets OMP_NUM_THREADS = cores // N (unless set) so that torch's thread pools do not oversubscribe
the cores.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TEMPLATE = HERE / "nginx.conf.template"
NGINX = os.environ.get("NGINX", shutil.which("nginx") or "/usr/sbin/nginx")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def wait_healthy(url: str, timeout: float, procs: list[subprocess.Popen]) -> None:
    deadline = time.time() + timeout
    while not healthy(url):
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"process {dead[0].args[0]} exited with {dead[0].returncode} before {url} was healthy")
        if time.time() > deadline:
            raise RuntimeError(f"{url} not healthy after {timeout:.0f} s")
        time.sleep(0.2)


def render_config(replica_ports: list[int], listen: str, workdir: Path) -> str:
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;" for p in replica_ports)
    picks = "\n".join(f'        "127.0.0.1:{p}" replica_{p};' for p in replica_ports)
    ups = "\n".join(
        f"    upstream replica_{p} {{\n        server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;\n"
        + "".join(f"        server 127.0.0.1:{q} backup;\n" for q in replica_ports if q != p)
        + "        keepalive 8;\n    }" for p in replica_ports)
    return (TEMPLATE.read_text().replace("{{WORKDIR}}", str(workdir)).replace("{{LISTEN}}", listen)
            .replace("{{SERVERS}}", servers).replace("{{PICKS}}", picks).replace("{{REPLICA_UPSTREAMS}}", ups))


@dataclass
class Replica:
    port: int
    proc: subprocess.Popen
    log: Path
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Cluster:
    url: str                                    # nginx's address
    replicas: list[Replica]
    nginx: subprocess.Popen
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pids(self) -> list[int]:
        """The replicas' pids (nginx's own memory is a few MiB and not counted)."""
        return [r.proc.pid for r in self.replicas]

    def check(self, max_restarts: int = 3) -> list[str]:
        """One round of health checks; restarts a replica whose process exited. Returns notes."""
        notes = []
        for r in self.replicas:
            if r.proc.poll() is not None:
                if r.restarts >= max_restarts:
                    notes.append(f"replica :{r.port} is down (exit {r.proc.returncode}), not restarted again")
                    continue
                code = r.proc.returncode
                r.restarts += 1
                r.proc = start_replica(r.port, r.log, self.env)
                notes.append(f"replica :{r.port} had exited ({code}); restarted")
            elif not healthy(r.url):
                notes.append(f"replica :{r.port} does not answer /_stcore/health")
        return notes


def start_replica(port: int, log: Path, env: dict[str, str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "a"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen, grace: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def cluster(replicas: int = 2, port: int | None = None, host: str = "127.0.0.1", timeout: float = 120,
            keep_dir: bool = False) -> Iterator[Cluster]:
    """Start `replicas` Streamlit replicas and nginx in front; yield a Cluster; stop all afterwards."""
    if not Path(NGINX).exists():
        raise RuntimeError("nginx not found: apt-get install nginx-light (or nginx), or set NGINX=/path/to/nginx")
    workdir = Path(tempfile.mkdtemp(prefix="lab-deploy-"))
    os.chmod(workdir, 0o755)
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
           "STREAMLIT_SERVER_COOKIE_SECRET": os.environ.get("STREAMLIT_SERVER_COOKIE_SECRET", secrets.token_hex(32)),
           # torch's thread pool per replica: the cores shared out, so N replicas do not oversubscribe them
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // replicas)))}
    reps: list[Replica] = []
    nginx: subprocess.Popen | None = None
    try:
        for _ in range(replicas):
            p = free_port()
            log = workdir / f"replica-{p}.log"
            reps.append(Replica(p, start_replica(p, log, env), log))
        for r in reps:
            wait_healthy(r.url, timeout, [r.proc])
        port = port or free_port()
        conf = workdir / "nginx.conf"
        conf.write_text(render_config([r.port for r in reps], f"{host}:{port}", workdir))
        test = subprocess.run([NGINX, "-t", "-p", str(workdir), "-c", str(conf)], capture_output=True, text=True)
        if test.returncode:
            raise RuntimeError(f"nginx rejected the config:\n{test.stderr}")
        nginx = subprocess.Popen([NGINX, "-p", str(workdir), "-c", str(conf)],          # daemon off in the config
                                 stdout=open(workdir / "nginx.out", "w"), stderr=subprocess.STDOUT)
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
        wait_healthy(url, 30, [nginx])
        yield Cluster(url, reps, nginx, workdir, env)
    finally:
        if nginx is not None:
            stop(nginx)                       # SIGTERM: fast shutdown of master and workers
        for r in reps:
            stop(r.proc)
        if not keep_dir:
            shutil.rmtree(workdir, ignore_errors=True)
