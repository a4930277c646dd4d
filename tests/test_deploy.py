"""deploy/: replicas and nginx under supervisord heal on one host (a killed replica comes back, a hung one is
restarted by the health check), SIGHUP to the launcher leaves no process behind and keeps the logs; and the
Kubernetes manifest is valid. Every wait has a deadline; how long things take is not asserted beyond it."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import until

import deploy
from deploy import Options, free_port, healthy, render_supervisor, server_proxy

ROOT = Path(__file__).resolve().parent.parent
BACK_WITHIN = 90            # s: a replica restarted by supervisord answers again (torch imports on 2 busy cores)
GRACE = 20                  # s: the health check's grace after a start, in this test's launcher


def _need_tools() -> None:
    if not Path(deploy.NGINX).exists():
        pytest.skip(f"nginx is not installed at {deploy.NGINX}: apt-get install nginx (tests/install_system.sh installs it)")
    if deploy.supervisord_path() is None:
        pytest.skip("supervisord is not installed: pip install -r deploy/requirements.txt")


def _sid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _descendants(pid: int) -> set[int]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.add(k)
            todo.append(k)
    return out


def _launch(tmp: Path, replicas: int) -> dict:
    """`python -m deploy` with replicas on ports given by flag, a fast health check, logs in a chosen folder;
    returns once every replica and nginx answer /_stcore/health."""
    ports = [free_port() for _ in range(replicas)]
    port = free_port()
    cmd = [sys.executable, "-m", "deploy", "--replicas", str(replicas), "--port", str(port),
           "--replica-ports", ",".join(map(str, ports)), "--logs", str(tmp / "logs"), "--run-dir", str(tmp / "run"),
           "--health-every", "1", "--health-timeout", "2", "--health-fails", "2", "--health-grace", str(GRACE)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=open(tmp / "launcher.out", "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    got = {"proc": proc, "ports": ports, "url": url, "tmp": tmp}
    try:
        until(lambda: all(healthy(f"http://127.0.0.1:{p}") for p in ports) and healthy(url),
               "the replicas and nginx did not answer /_stcore/health", 180)
    except BaseException:
        _end(got)
        raise
    got["rpc"] = server_proxy(tmp / "run" / "supervisor.sock").supervisor
    return got


def _end(launched: dict) -> None:
    proc = launched["proc"]
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _gone_after(launched: dict, sig: int) -> None:
    """Send `sig` to the launcher; every process it started (and anything in supervisord's session) ends."""
    proc = launched["proc"]
    tree = _descendants(proc.pid)
    sd = launched["rpc"].getPID()
    assert sd in tree and len(tree) >= 4                       # supervisord, replicas, nginx (+ worker), health
    os.kill(proc.pid, sig)
    proc.wait(90)
    left = lambda: [p for p in tree if _alive(p)] + [int(d.name) for d in Path("/proc").iterdir()      # noqa: E731
                                                     if d.name.isdigit() and _sid(int(d.name)) == sd]
    until(lambda: not left(), f"every process of the deployment gone after {signal.Signals(sig).name}", 60)


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    _need_tools()
    got = _launch(tmp_path_factory.mktemp("deploy"), 2)
    try:
        yield got
    finally:
        _end(got)


@pytest.mark.slow
def test_replicas_listen_on_the_ports_given_and_nginx_answers(launched):
    info = {i["name"]: i for i in launched["rpc"].getAllProcessInfo()}
    assert {f"replica-{p}" for p in launched["ports"]} | {"nginx", "health"} == set(info)
    until(lambda: all(i["statename"] == "RUNNING" for i in launched["rpc"].getAllProcessInfo()),
           "every program RUNNING (past supervisord's startsecs)", 30)
    assert healthy(launched["url"])


@pytest.mark.slow
def test_kill_9_of_a_replica_is_restarted_and_answers_again(launched):
    rpc, p = launched["rpc"], launched["ports"][0]
    old = rpc.getProcessInfo(f"replica-{p}")["pid"]
    os.kill(old, signal.SIGKILL)
    until(lambda: rpc.getProcessInfo(f"replica-{p}")["pid"] not in (0, old) and healthy(f"http://127.0.0.1:{p}"),
           f"replica-{p} back after kill -9", BACK_WITHIN)
    assert healthy(launched["url"])


@pytest.mark.slow
def test_sigstopped_replica_is_restarted_by_the_health_check(launched):
    rpc, p = launched["rpc"], launched["ports"][1]
    info = rpc.getProcessInfo(f"replica-{p}")
    until(lambda: (lambda i: i["now"] - i["start"] > GRACE + 1)(rpc.getProcessInfo(f"replica-{p}")),
           "the replica's grace period to pass", GRACE + 30)
    old = info["pid"]
    os.kill(old, signal.SIGSTOP)
    try:
        until(lambda: rpc.getProcessInfo(f"replica-{p}")["pid"] not in (0, old), "the hung replica restarted",
               30)
        until(lambda: healthy(f"http://127.0.0.1:{p}"), "the restarted replica answering", BACK_WITHIN)
    finally:
        try:
            os.kill(old, signal.SIGCONT)
        except ProcessLookupError:
            pass
    log = (launched["tmp"] / "logs" / "health.log").read_text()
    assert f"replica-{p} is hung: killing its process group (pid {old})" in log


@pytest.mark.slow
def test_sighup_to_the_launcher_stops_everything_and_keeps_the_logs(launched):
    _gone_after(launched, signal.SIGHUP)
    assert launched["proc"].returncode == 0
    logs = launched["tmp"] / "logs"
    want = {f"replica-{p}.log" for p in launched["ports"]} | {"nginx.log", "health.log"}
    assert want <= {f.name for f in logs.iterdir()}
    assert "SIGHUP: stopping" in (launched["tmp"] / "launcher.out").read_text()


LAUNCHER_SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGKILL]


@pytest.fixture(scope="module")
def one_per_signal(tmp_path_factory):
    """A deployment of one replica for each signal the launcher is sent below, launched side by side (most of a
    launch is waiting for programs to start); each test stops its own. Whatever is left is stopped at the end."""
    from concurrent.futures import ThreadPoolExecutor

    _need_tools()
    with ThreadPoolExecutor(len(LAUNCHER_SIGNALS)) as pool:
        futures = {sig: pool.submit(_launch, tmp_path_factory.mktemp(sig.name), 1) for sig in LAUNCHER_SIGNALS}
    got = {sig: f.result() for sig, f in futures.items() if f.exception() is None}
    try:
        for f in futures.values():
            if f.exception() is not None:             # a launch that failed stopped its own deployment
                raise f.exception()
        yield got
    finally:
        for g in got.values():
            _end(g)


@pytest.mark.slow
@pytest.mark.parametrize("sig", LAUNCHER_SIGNALS, ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_sigterm_sigint_and_kill_9_of_the_launcher_leave_no_process(one_per_signal, sig):
    """SIGTERM and SIGINT stop it cleanly; after kill -9 of the launcher, supervisord (told by the kernel's
    parent-death signal) still stops every program."""
    got = one_per_signal[sig]
    _gone_after(got, sig)
    if sig != signal.SIGKILL:
        assert got["proc"].returncode == 0
        assert f"{signal.Signals(sig).name}: stopping" in (got["tmp"] / "launcher.out").read_text()


@pytest.mark.unit
def test_supervisor_config_restarts_rotates_logs_and_stops_process_groups(tmp_path):
    o = Options(replicas=2, replica_ports=[9001, 9002], log_max_mb=7, log_backups=3, start_retries=11)
    conf = render_supervisor(o, o.ports(), tmp_path / "run", tmp_path / "logs", 8080)
    for p in (9001, 9002):
        assert f"[program:replica-{p}]" in conf and f"--server.port {p}" in conf
    assert conf.count("autorestart=true") == 4 and conf.count("killasgroup=true") == 4
    assert conf.count("stdout_logfile_maxbytes=7MB") == 4 and conf.count("stdout_logfile_backups=3") == 4
    assert "startretries=11" in conf and f"stdout_logfile={tmp_path / 'logs' / 'nginx.log'}" in conf
    assert Options(replicas=3, first_port=8600).ports() == [8600, 8601, 8602]
    with pytest.raises(ValueError):
        Options(replicas=3, replica_ports=[1, 2]).ports()


@pytest.mark.unit
def test_kubernetes_manifest_is_valid_offline():
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (in requirements-dev.txt)")
    import yaml

    path = ROOT / "deploy" / "k8s.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Deployment", "Service", "Ingress"}
    for d in docs:
        kv.validate(d, "1.32", strict=True)                    # raises ValidationError on any schema problem
    c = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == "/_stcore/health"
    ann = kinds["Ingress"]["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/affinity"] == "cookie"


@pytest.mark.slow
def test_a_replica_supervisord_gave_up_on_is_started_again_with_a_log_line(tmp_path):
    """Port taken: the replica cannot start, supervisord backs off and gives up (FATAL); the health program says
    so in its log and starts it again after a pause; once the port is free the replica answers."""
    import socket

    _need_tools()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    p = blocker.getsockname()[1]
    cmd = [sys.executable, "-m", "deploy", "--replicas", "1", "--port", str(free_port()), "--replica-ports", str(p),
           "--logs", str(tmp_path / "logs"), "--run-dir", str(tmp_path / "run"), "--start-retries", "1",
           "--health-every", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=open(tmp_path / "launcher.out", "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    got = {"proc": proc}
    try:
        sock = tmp_path / "run" / "supervisor.sock"
        until(sock.exists, "supervisord's socket", 60)
        rpc = server_proxy(sock).supervisor
        until(lambda: rpc.getProcessInfo(f"replica-{p}")["statename"] == "FATAL", "supervisord giving up", 120)
        log = tmp_path / "logs" / "health.log"
        until(lambda: log.exists() and f"replica-{p} is FATAL" in log.read_text(), "the health log saying so", 30)
        blocker.close()
        until(lambda: healthy(f"http://127.0.0.1:{p}"), "the replica started again and answering", 120)
        assert f"starting replica-{p} again" in log.read_text()
    finally:
        blocker.close()
        _end(got)
