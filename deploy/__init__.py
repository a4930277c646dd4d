"""Past one process: N Streamlit replicas of the lab behind nginx on one host, under `supervisord`.

    python -m deploy --replicas 2                                  # or: deploy/run.sh 2
    python -m deploy --replicas 3 --port 8080 --replica-ports 8501,8502,8503 --logs /var/log/lab

Writes a supervisord config (and nginx's, from deploy/nginx.conf.template) into a run folder and
runs `supervisord` in front of four kinds of program:

- `replica-PORT`: `streamlit run app.py` on 127.0.0.1:PORT (ports by flag; 0 picks free ones), through
  `python -m deploy.replica`, which lets a session that moved here after a lost replica or host run its page
  on the student's next move (see deploy/replica.py).
  Restarted whenever it exits (autorestart); a start that fails is retried with supervisor's
  growing back-off (1 s, 2 s, 3 s ... up to --start-retries times).
- `nginx` in front of them (sticky sessions by cookie, websockets; see the template).
- `health`: `python -m deploy.health`, which asks every replica for /_stcore/health each
  --health-every seconds; a replica that does not answer --health-fails times in a row (hung,
  SIGSTOP'd, stuck in a loop) has its process group killed with SIGKILL, and supervisor starts it
  again. A program that supervisor gave up on (FATAL) is logged and started again after a
  doubling pause (10 s to 5 min): the launcher never gives up silently.
- logs: every program's output goes to --logs (kept after stop), rotated by supervisor at
  --log-max-mb with --log-backups old files; nginx's access and error logs go to its output.

SIGTERM, SIGINT and SIGHUP (closing the terminal) stop everything: the launcher asks supervisord to
stop (each program's whole process group, SIGKILL after --stop-wait s) and waits for it; supervisord
itself dies with the launcher (Linux parent-death signal), so nothing is orphaned even by kill -9 of
the launcher.

All replicas share one cookie secret (XSRF tokens stay valid whichever replica signed them), and
each gets OMP_NUM_THREADS = cores // N (unless set) so that torch's thread pools do not oversubscribe
the cores.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
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


def supervisord_path() -> str | None:
    """The supervisord next to this Python (pip install supervisor), else on PATH."""
    here = Path(sys.executable).parent / "supervisord"
    return str(here) if here.exists() else shutil.which("supervisord")


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


def _addr(a: int | str) -> str:
    """'host:port' for nginx: a bare port is a replica on this machine (127.0.0.1)."""
    return f"127.0.0.1:{a}" if isinstance(a, int) or str(a).isdigit() else str(a)


def parse_upstreams(text: str) -> list[str]:
    """'10.0.0.2:8501,10.0.0.3:8501' -> ['10.0.0.2:8501', '10.0.0.3:8501'] (host:port each, checked)."""
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c in host for c in " ;{}\"'"):
            raise ValueError(f"not a host:port upstream: {item!r}")
        out.append(item)
    if len(set(out)) != len(out):
        raise ValueError(f"an upstream is given twice: {text!r}")
    return out


def render_config(replicas: list[int] | list[str], listen: str, workdir: Path, ws_timeout: float = 5.0,
                  connect_timeout: float = 1.0, fail_timeout: float = 10.0) -> str:
    """nginx's config for these replicas: ports on this machine, or 'host:port' on any host.

    A replica that refuses or does not accept a connection within `connect_timeout` s is skipped for this
    request (proxy_next_upstream error timeout) and left out of rotation for `fail_timeout` s (max_fails=1).
    A websocket from which nothing came for `ws_timeout` s (the replicas ping every 2 s) is closed, so that the
    browser reconnects: to another replica when its host is gone."""
    addrs = [_addr(a) for a in replicas]
    if not addrs:
        raise ValueError("no replica for nginx to send requests to")
    name = {a: "replica_" + "".join(c if c.isalnum() else "_" for c in a) for a in addrs}
    fails = f"max_fails=1 fail_timeout={fail_timeout:g}s"
    servers = "\n".join(f"        server {a} {fails};" for a in addrs)
    picks = "\n".join(f'        "{a}" {name[a]};' for a in addrs)
    ups = "\n".join(
        f"    upstream {name[a]} {{\n        server {a} {fails};\n"
        + "".join(f"        server {b} backup;\n" for b in addrs if b != a)
        + "    }" for a in addrs)
    return (TEMPLATE.read_text().replace("{{WORKDIR}}", str(workdir)).replace("{{LISTEN}}", listen)
            .replace("{{SERVERS}}", servers).replace("{{PICKS}}", picks).replace("{{REPLICA_UPSTREAMS}}", ups)
            .replace("{{WS_TIMEOUT}}", f"{ws_timeout:g}s").replace("{{CONNECT_TIMEOUT}}", f"{connect_timeout:g}s")
            .replace("{{FAIL_TIMEOUT}}", f"{fail_timeout:g}s"))


@dataclass
class Options:
    replicas: int = 2
    port: int = 8080                       # nginx's; 0: a free one
    host: str = "127.0.0.1"
    replica_ports: list[int] = field(default_factory=list)    # empty: first_port, first_port + 1, ...
    first_port: int = 8501                 # 0: free ones
    logs: Path | None = None               # None: <run folder>/logs
    log_max_mb: int = 10
    log_backups: int = 5
    health_every: float = 5.0
    health_timeout: float = 3.0
    health_fails: int = 3
    health_grace: float = 60.0             # seconds after a (re)start before the health check counts failures
    start_retries: int = 20                # supervisor's back-off: 1 + 2 + ... + 20 s, then the health program
    stop_wait: float = 10.0
    upstreams: list[str] = field(default_factory=list)       # replicas on other hosts, 'host:port' (nginx only)
    replica_address: str = "127.0.0.1"     # where this host's replicas listen (0.0.0.0: for a front elsewhere)
    ws_ping: int = 2                       # s between the replicas' websocket pings (server.websocketPingInterval)
    ws_timeout: float = 5.0                # s without a byte from a replica before nginx drops its websocket
    connect_timeout: float = 1.0           # s nginx waits for a replica to accept, then tries the next one
    fail_timeout: float = 10.0             # s a replica that failed is out of nginx's rotation

    def ports(self) -> list[int]:
        if self.replica_ports:
            if len(self.replica_ports) != self.replicas:
                raise ValueError(f"{len(self.replica_ports)} replica ports given for {self.replicas} replicas")
            return list(self.replica_ports)
        if self.replicas == 0:
            return []
        if self.first_port == 0:
            return [free_port() for _ in range(self.replicas)]
        return [self.first_port + i for i in range(self.replicas)]


def _q(v: object) -> str:
    """A value for supervisor's ini file ('%' is its interpolation character)."""
    return str(v).replace("%", "%%")


def render_supervisor(o: Options, ports: list[int], run: Path, logs: Path, nginx_port: int) -> str:
    def log(name: str) -> str:
        return (f"stdout_logfile={_q(logs / f'{name}.log')}\nstdout_logfile_maxbytes={o.log_max_mb}MB\n"
                f"stdout_logfile_backups={o.log_backups}\nredirect_stderr=true\n")
    common = (f"autostart=true\nautorestart=true\nstartretries={o.start_retries}\nstopasgroup=true\n"
              f"killasgroup=true\nstopwaitsecs={int(o.stop_wait)}\n")
    out = [f"""[supervisord]
nodaemon=true
logfile={_q(logs / 'supervisord.log')}
logfile_maxbytes={o.log_max_mb}MB
logfile_backups={o.log_backups}
pidfile={_q(run / 'supervisord.pid')}
childlogdir={_q(logs)}
loglevel=info

[unix_http_server]
file={_q(run / 'supervisor.sock')}
chmod=0700

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{_q(run / 'supervisor.sock')}
"""]
    for p in ports:
        cmd = (f"{sys.executable} -m deploy.replica run {ROOT / 'app.py'} --server.port {p} --server.address "
               f"{o.replica_address} --server.headless true --browser.gatherUsageStats false "
               f"--server.websocketPingInterval {o.ws_ping}")
        out.append(f"[program:replica-{p}]\ncommand={_q(cmd)}\ndirectory={_q(ROOT)}\nstartsecs=5\npriority=10\n"
                   + common + log(f"replica-{p}"))
    out.append(f"[program:nginx]\ncommand={_q(NGINX)} -p {_q(run)} -c {_q(run / 'nginx.conf')}\nstartsecs=1\n"
               f"priority=20\nstopsignal=TERM\n" + common + log("nginx"))
    if ports:                              # replicas on other hosts are their own launcher's to heal
        health = (f"{sys.executable} -m deploy.health --socket {run / 'supervisor.sock'} --ports "
                  f"{','.join(map(str, ports))} --address {_local(o.replica_address)} --every {o.health_every} "
                  f"--timeout {o.health_timeout} --fails {o.health_fails} --grace {o.health_grace}")
        out.append(f"[program:health]\ncommand={_q(health)}\ndirectory={_q(ROOT)}\nstartsecs=1\npriority=30\n"
                   + common + log("health"))
    return "\n".join(out)


def _local(address: str) -> str:
    """The address this host reaches its own replicas at (a wildcard listen is reached on loopback)."""
    return "127.0.0.1" if address in ("0.0.0.0", "", "::") else address


def upstream_addresses(o: Options, ports: list[int]) -> list[str]:
    """nginx's upstream servers: this host's replicas, then the ones on other hosts (--upstreams)."""
    return [f"{_local(o.replica_address)}:{p}" for p in ports] + list(o.upstreams)


def server_proxy(sock: str | Path):
    """XML-RPC to supervisord over its unix socket (supervisor.getProcessInfo, signalProcess, ...)."""
    import xmlrpc.client

    from supervisor.xmlrpc import SupervisorTransport

    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(None, None, f"unix://{sock}"))


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the launcher dies (Linux), and its own session."""
    os.setsid()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)      # PR_SET_PDEATHSIG


@dataclass
class Replica:
    port: int
    name: str
    cluster: "Cluster"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return int(self.cluster.rpc().supervisor.getProcessInfo(self.name)["pid"])


@dataclass
class Cluster:
    url: str                                    # nginx's address
    replicas: list[Replica]
    supervisord: subprocess.Popen
    workdir: Path                               # the run folder: configs, supervisor's socket
    logs: Path
    env: dict[str, str] = field(default_factory=dict)

    def rpc(self):
        return server_proxy(self.workdir / "supervisor.sock")

    @property
    def pids(self) -> list[int]:
        """The replicas' pids (nginx's own memory is a few MiB and not counted)."""
        return [r.pid for r in self.replicas]

    def states(self) -> dict[str, dict]:
        return {i["name"]: i for i in self.rpc().supervisor.getAllProcessInfo()}


def start_supervisor(o: Options, run: Path | None = None, env: dict[str, str] | None = None
                     ) -> tuple[subprocess.Popen, Path, Path, list[int], int]:
    """Write the configs and start supervisord (its own session; it dies with this process).
    Returns (supervisord, run folder, logs folder, replica ports, nginx port)."""
    sd = supervisord_path()
    if sd is None:
        raise RuntimeError("supervisord not found: pip install -r deploy/requirements.txt (the PyPI package "
                           "'supervisor')")
    if not Path(NGINX).exists():
        raise RuntimeError("nginx not found: apt-get install nginx, or set NGINX=/path/to/nginx")
    run = Path(run) if run else Path(tempfile.mkdtemp(prefix="lab-deploy-"))
    run.mkdir(parents=True, exist_ok=True)
    os.chmod(run, 0o755)
    logs = Path(o.logs) if o.logs else run / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ports = o.ports()
    port = o.port or free_port()
    nginx_conf = render_config(upstream_addresses(o, ports), f"{o.host}:{port}", run, ws_timeout=o.ws_timeout,
                               connect_timeout=o.connect_timeout, fail_timeout=o.fail_timeout)
    (run / "nginx.conf").write_text(nginx_conf)
    test = subprocess.run([NGINX, "-t", "-p", str(run), "-c", str(run / "nginx.conf")], capture_output=True, text=True)
    if test.returncode:
        raise RuntimeError(f"nginx rejected the config:\n{test.stderr}")
    (run / "supervisord.conf").write_text(render_supervisor(o, ports, run, logs, port))
    env = {**os.environ, **(env or {})}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    env.setdefault("STREAMLIT_SERVER_COOKIE_SECRET", secrets.token_hex(32))
    # torch's thread pool per replica: the cores shared out, so N replicas do not oversubscribe them
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, len(ports)))))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    proc = subprocess.Popen([sd, "-n", "-c", str(run / "supervisord.conf")], cwd=ROOT, env=env,
                            stdout=open(logs / "supervisord.out", "a"), stderr=subprocess.STDOUT,
                            preexec_fn=_die_with_parent)
    return proc, run, logs, ports, port


def stop(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM, then SIGKILL after `grace` s (supervisord: it stops every program first)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_healthy(url: str, timeout: float, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(url):
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"process {dead[0].args[0]} exited with {dead[0].returncode} before {url} was healthy")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not healthy after {timeout:.0f} s")
        time.sleep(0.2)


@contextlib.contextmanager
def cluster(replicas: int = 2, port: int | None = None, host: str = "127.0.0.1", timeout: float = 120,
            keep_dir: bool = False, options: Options | None = None) -> Iterator[Cluster]:
    """Start `replicas` Streamlit replicas and nginx under supervisord (free ports unless `options` say);
    yield a Cluster once all answer; stop everything afterwards (logs kept only with keep_dir)."""
    o = options or Options(replicas=replicas, port=port or 0, host=host, first_port=0)
    proc, run, logs, ports, nport = start_supervisor(o)
    try:
        c = Cluster(f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{nport}", [], proc, run, logs)
        c.replicas = [Replica(p, f"replica-{p}", c) for p in ports]
        for r in c.replicas:
            wait_healthy(r.url, timeout, [proc])
        wait_healthy(c.url, 30, [proc])
        yield c
    finally:
        stop(proc)
        if not keep_dir:
            shutil.rmtree(run, ignore_errors=True)
