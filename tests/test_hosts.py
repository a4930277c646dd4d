"""Replicas on several hosts (issue 19): one nginx (`python -m deploy --replicas 0 --upstreams ...`) in front of
three hosts, each a network namespace on this machine with its own address on a bridge and one Streamlit replica.
Students open sessions through nginx; one host's link is cut (`ip link set ... down` on its veth, so packets to it
vanish: no reset, as when a machine loses its network). Then:

(a) the students whose sessions were on that host are disconnected by nginx (nothing from the replica for
    --ws-timeout s, though the replicas ping every 2 s) and, reconnecting as the browser does (a health request,
    then a websocket with the cookie, then the page rerun with the widget states it had), get a working page
    from another host within 10 s of the cut: a requirement of the issue, asserted with the time measured;
(b) every session opened after the cut lands on one of the other two hosts;
(c) the sessions on the other hosts keep their websocket (no reconnect) and a rerun still answers;
and once the link is back, the host takes new sessions again.

Which replica holds a session is asked of the replicas themselves: a Streamlit server accepts an upload only for
a session it holds (204) and answers 400 'Invalid session_id' otherwise (see tests/test_load.py).

Needs root (namespaces, veths, a bridge), `ip` (iproute2), nginx and supervisord; skips with the reason otherwise.
Everything it creates (namespaces, bridge, veths, processes) is removed in the fixture's finaliser."""
import asyncio
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import until

import deploy
from bench.load import Session, SessionError

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
NET = "10.77.19"                 # a private /24 used only inside the namespaces this test creates
PORT = 8601                      # each host's replica
HOSTS = 3
RECONNECT_WITHIN = 10.0          # s from the cut: the bound
PAGE, QUERY = "sampling", "text=the%20bear%20ate%20the"
WIDGET = "Number of draws"
TAG = f"{os.getpid() % 100000}"  # interface and namespace names unique to this run (<= 15 characters)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=check)


def _need_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces, a bridge and veth pairs")
    if shutil.which("ip") is None:
        pytest.skip("the ip command is missing: apt-get install iproute2")
    if not Path(deploy.NGINX).exists():
        pytest.skip(f"nginx is not installed at {deploy.NGINX}: apt-get install nginx (tests/install_system.sh installs it)")
    if deploy.supervisord_path() is None:
        pytest.skip("supervisord is not installed: pip install -r deploy/requirements.txt")
    if f" {NET}." in _ip("-4", "-o", "addr", "show").stdout:
        pytest.skip(f"{NET}.0/24 is already in use on this machine (another run of this test?)")
    probe = f"lab19p{TAG}"
    got = _ip("netns", "add", probe, check=False)
    if got.returncode:
        pytest.skip(f"`ip netns add` fails here ({got.stderr.strip()}): no network namespaces in this container")
    _ip("netns", "del", probe, check=False)


# ----------------------------------------------------------------------------------------------- the hosts
class Hosts:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.bridge = f"lab19b{TAG}"
        self.ns = [f"lab19h{TAG}-{i}" for i in range(HOSTS)]
        self.veth = [f"lab19v{TAG}{i}" for i in range(HOSTS)]          # the root namespace's end, on the bridge
        self.addr = [f"{NET}.{i + 2}" for i in range(HOSTS)]
        self.upstream = [f"{a}:{PORT}" for a in self.addr]
        self.replicas: list[subprocess.Popen] = []
        self.front: subprocess.Popen | None = None
        self.url = ""
        self.cut_at: int | None = None

    def network(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{NET}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for ns, veth, addr in zip(self.ns, self.veth, self.addr):
            _ip("netns", "add", ns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", veth, "master", self.bridge, "up")
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def start(self) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
               "STREAMLIT_SERVER_COOKIE_SECRET": secrets.token_hex(32), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(ROOT)}
        for ns, addr in zip(self.ns, self.addr):            # one replica per host, as its own launcher would run it
            cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "deploy.replica", "run", str(ROOT / "app.py"),
                   "--server.address", addr, "--server.port", str(PORT), "--server.headless", "true",
                   "--browser.gatherUsageStats", "false", "--server.websocketPingInterval", "2"]
            self.replicas.append(subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                                                  stdout=open(self.tmp / f"replica-{addr}.log", "w"),
                                                  stderr=subprocess.STDOUT))
        port = deploy.free_port()
        cmd = [sys.executable, "-m", "deploy", "--replicas", "0", "--upstreams", ",".join(self.upstream),
               "--port", str(port), "--logs", str(self.tmp / "logs"), "--run-dir", str(self.tmp / "run")]
        self.front = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True,
                                      stdout=open(self.tmp / "front.out", "w"), stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            dead = [(a, p.returncode) for a, p in zip(self.addr, self.replicas) if p.poll() is not None]
            if dead:
                pytest.fail(f"replica exited: {dead}; logs in {self.tmp}")
            return all(deploy.healthy(f"http://{u}") for u in self.upstream)
        until(up, "the three replicas answering /_stcore/health on their hosts' addresses", 240, every=1)
        until(lambda: deploy.healthy(self.url), "nginx (python -m deploy --replicas 0 --upstreams ...) answering",
               60)

    def cut(self, i: int) -> None:
        _ip("link", "set", self.veth[i], "down")
        self.cut_at = i

    def restore(self, i: int) -> None:
        _ip("link", "set", self.veth[i], "up")
        self.cut_at = None

    def close(self) -> None:
        if self.front is not None and self.front.poll() is None:
            self.front.terminate()                      # the launcher stops supervisord and nginx
            try:
                self.front.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.front.pid, signal.SIGKILL)
                self.front.wait(10)
        for p in self.replicas:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.replicas:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        for veth in self.veth:                          # each pair goes with its root end
            _ip("link", "del", veth, check=False)
        for ns in self.ns:
            _ip("netns", "del", ns, check=False)
        _ip("link", "del", self.bridge, check=False)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    _need_tools()
    h = Hosts(tmp_path_factory.mktemp("hosts"))
    try:
        h.network()
        h.start()
        yield h
    finally:
        h.close()

    def left() -> list[str]:                            # the kernel removes a namespace's links asynchronously
        return [n for n in h.ns if n in _ip("netns", "list").stdout] + \
            [d for d in [h.bridge, *h.veth] if _ip("link", "show", d, check=False).returncode == 0]
    deadline = time.monotonic() + 20
    while left() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left(), f"left behind: {left()}"


# ----------------------------------------------------------------------------------------------- students
def _get(url: str, cookie: str = "", timeout: float = 10) -> str:
    """GET through nginx as a browser does; returns the lab_replica cookie it sets ('lab_replica=ADDR')."""
    req = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        for c in r.headers.get_all("Set-Cookie") or []:
            if c.startswith("lab_replica="):
                return c.split(";")[0]
    raise AssertionError(f"{url} set no lab_replica cookie")


def _xsrf(replica: str) -> str:
    with urllib.request.urlopen(f"http://{replica}/_stcore/health", timeout=5) as r:
        for c in r.headers.get_all("Set-Cookie") or []:
            if c.startswith("_streamlit_xsrf="):
                return c.split(";")[0].split("=", 1)[1]
    raise AssertionError(f"{replica} set no _streamlit_xsrf cookie")


def _holds(replica: str, session_id: str) -> bool:
    """Does this replica hold the session? It accepts an upload only for a session of its own."""
    token = _xsrf(replica)
    b = uuid.uuid4().hex
    body = (f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="probe.txt"\r\n'
            f"Content-Type: text/plain\r\n\r\nx\r\n--{b}--\r\n").encode()
    req = urllib.request.Request(f"http://{replica}/_stcore/upload_file/{session_id}/probe-{b[:8]}", data=body,
                                 method="PUT", headers={"Content-Type": f"multipart/form-data; boundary={b}",
                                                        "Cookie": f"_streamlit_xsrf={token}", "X-Xsrftoken": token})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status == 204
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        assert e.code == 400 and "Invalid session_id" in text, (replica, e.code, text)
        return False


def _holder(h: Hosts, session_id: str) -> str:
    """The upstream ('addr:port') of the one reachable replica holding the session."""
    live = [u for i, u in enumerate(h.upstream) if i != h.cut_at]
    got = [u for u in live if _holds(u, session_id)]
    assert len(got) <= 1, f"two replicas claim session {session_id}: {got}"
    return got[0] if got else ""


async def _student(h: Hosts, cookie: str = "") -> tuple[Session, str]:
    """A browser opening the lab: the page's GET sets the cookie (nginx picks a replica), then the websocket with
    it; the Sampling page is opened and its slider moved once."""
    cookie = await asyncio.to_thread(_get, f"{h.url}/", cookie)
    s = Session(h.url, timeout=60, headers={"Cookie": cookie})
    await s.open(PAGE, QUERY)
    await s.change(WIDGET)
    assert s.session_id and not s.errors, s.errors
    return s, cookie


async def _reconnect(h: Hosts, old: Session, cookie: str, t_cut: float) -> dict:
    """What Streamlit's frontend does when its websocket closes: it asks /_stcore/health until the server answers
    and opens a new websocket (the browser sends its cookie, now naming the replica that answered). It does not
    rerun the page (it expects its session to be still there) and keeps what it drew; the student's next move of
    the live section's slider is a fragment rerun with every widget's state, which the new replica must answer
    (deploy/replica.py). The student is assumed to move it as soon as the page is connected again."""
    await asyncio.wait_for(asyncio.shield(old.reader), 60)
    closed = time.monotonic() - t_cut
    while True:
        try:
            cookie = await asyncio.to_thread(_get, f"{h.url}/_stcore/health", cookie, 5)
            break
        except OSError:
            assert time.monotonic() - t_cut < 60, "nginx did not answer /_stcore/health within 60 s of the cut"
            await asyncio.sleep(0.5)
    s = Session(h.url, timeout=30, headers={"Cookie": cookie})
    s.page, s.query, s.page_hash = old.page, old.query, old.page_hash       # what the tab shows and keeps
    s.widgets, s.states, s.cached = dict(old.widgets), dict(old.states), set(old.cached)
    await s.connect()
    connected = time.monotonic() - t_cut
    before = dict(s.charts)
    try:
        await s.change(WIDGET)
    except SessionError as e:
        pytest.fail(f"after the reconnect the slider's move got no answer from the new replica ({e})")
    page = time.monotonic() - t_cut
    assert s.session_id and s.session_id != old.session_id and not s.errors, (s.session_id, s.errors)
    assert s.charts != before and s.widget(WIDGET), "the new replica did not draw the page"
    await s.change(WIDGET)                                                    # and it goes on working
    return {"session": s, "cookie": cookie, "closed": closed, "connected": connected, "page": page}


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def test_front_config_for_replicas_on_other_hosts(tmp_path):
    """The front's nginx config: every host:port is a server in the pool and has its own sticky upstream with
    the others as backups; a dead replica is skipped after the connect timeout and left out for fail_timeout."""
    ups = ["10.0.0.2:8601", "10.0.0.3:8601", "[fd00::4]:8601"]
    conf = deploy.render_config(ups, "127.0.0.1:8080", tmp_path, ws_timeout=5, connect_timeout=1, fail_timeout=10)
    for u in ups:
        assert f"server {u} max_fails=1 fail_timeout=10s;" in conf and f'"{u}" replica_' in conf
        assert conf.count(f"server {u} backup;") == len(ups) - 1
    assert "proxy_connect_timeout 1s;" in conf and "proxy_next_upstream error timeout;" in conf
    assert "proxy_read_timeout 5s;" in conf and "keepalive" not in re.sub(r"#.*", "", conf)
    assert deploy.parse_upstreams(" 10.0.0.2:8601, h2.lab:8601 ") == ["10.0.0.2:8601", "h2.lab:8601"]
    for bad in ("10.0.0.2", "10.0.0.2:x", "a:1,a:1", "a b:1"):
        with pytest.raises(ValueError):
            deploy.parse_upstreams(bad)
    o = deploy.Options(replicas=0, upstreams=ups)
    sup = deploy.render_supervisor(o, o.ports(), tmp_path / "run", tmp_path / "logs", 8080)
    assert "[program:nginx]" in sup and "[program:replica" not in sup and "[program:health]" not in sup
    o = deploy.Options(replicas=1, replica_ports=[8501], replica_address="0.0.0.0", upstreams=ups[:1])
    sup = deploy.render_supervisor(o, o.ports(), tmp_path / "run", tmp_path / "logs", 8080)
    assert "-m deploy.replica run" in sup and "--server.address 0.0.0.0" in sup
    assert "--server.websocketPingInterval 2" in sup and "--address 127.0.0.1" in sup       # health asks locally
    assert deploy.upstream_addresses(o, o.ports()) == ["127.0.0.1:8501", "10.0.0.2:8601"]
    if Path(deploy.NGINX).exists():                          # nginx itself accepts it
        (tmp_path / "nginx.conf").write_text(conf)
        t = subprocess.run([deploy.NGINX, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                           capture_output=True, text=True, timeout=30)
        assert t.returncode == 0, t.stderr


def test_cut_host_students_reconnect_elsewhere_new_ones_avoid_it_others_unaffected(hosts):
    h = hosts

    async def scenario() -> dict:
        for u in h.upstream:                       # each replica's first visit imports and loads the model
            s = Session(h.url, timeout=180, headers={"Cookie": f"lab_replica={u}"})
            try:
                await s.open(PAGE, QUERY)
            finally:
                await s.close()
        students: list[tuple[Session, str, str]] = []       # (session, cookie, holder)
        back: list[dict] = []
        fresh: list[tuple[Session, str, str]] = []
        try:
            for _ in range(2 * HOSTS):             # a class arriving: nginx picks each one's replica
                s, cookie = await _student(h)
                students.append((s, cookie, await asyncio.to_thread(_holder, h, s.session_id)))
            for u in h.upstream:                   # a host nginx gave nobody: a student returning to it
                if not any(x[2] == u for x in students):
                    s, cookie = await _student(h, f"lab_replica={u}")
                    students.append((s, cookie, await asyncio.to_thread(_holder, h, s.session_id)))
            for s, cookie, holder in students:
                assert cookie == f"lab_replica={holder}", ("the cookie names the replica holding the session",
                                                           cookie, holder)
            per_host = {u: sum(x[2] == u for x in students) for u in h.upstream}
            assert all(per_host.values()), per_host

            victim = h.upstream[0]
            mine = [x for x in students if x[2] == victim]
            others = [x for x in students if x[2] != victim]
            load_before = _load()
            t_cut = time.monotonic()
            h.cut(0)
            back += await asyncio.gather(*(_reconnect(h, s, c, t_cut) for s, c, _ in mine))
            # (b) new students after the cut
            for _ in range(2 * HOSTS):
                s, cookie = await _student(h)
                fresh.append((s, cookie, await asyncio.to_thread(_holder, h, s.session_id)))
            # (c) the others, past the time nginx would have dropped their websockets too
            await asyncio.sleep(max(0.0, 8.0 - (time.monotonic() - t_cut)))
            unchanged = []
            for s, cookie, holder in others:
                before = s.session_id
                alive = not s.reader.done()
                await s.change(WIDGET)
                unchanged.append((alive, s.session_id == before, not s.errors,
                                  await asyncio.to_thread(_holds, holder, s.session_id)))
            load_after = _load()
            moved = [await asyncio.to_thread(_holder, h, b["session"].session_id) for b in back]
            # the link back: once out of nginx's fail_timeout the host takes new sessions again
            h.restore(0)
            t_back = time.monotonic()
            again = None
            while time.monotonic() - t_back < 90 and again is None:
                s, cookie = await _student(h)
                fresh_holder = await asyncio.to_thread(_holder, h, s.session_id)
                students.append((s, cookie, fresh_holder))
                if fresh_holder == victim:
                    again = time.monotonic() - t_back
                else:
                    await asyncio.sleep(1)
            return {"per_host": per_host, "mine": mine, "back": back, "moved": moved, "fresh": fresh,
                    "unchanged": unchanged, "again": again, "load": (load_before, load_after),
                    "others": others, "victim": victim}
        finally:
            for s in [x[0] for x in students + fresh] + [b["session"] for b in back]:
                await s.close()

    r = asyncio.run(scenario())
    victim = r["victim"]
    pages = [b["page"] for b in r["back"]]
    closed = ", ".join(f"{b['closed']:.1f}" for b in r["back"])
    connected = ", ".join(f"{b['connected']:.1f}" for b in r["back"])
    print(f"\nhosts: sessions per host before the cut {r['per_host']}; cut {victim}: its {len(r['mine'])} "
          f"sessions' websockets closed by nginx after {closed} s, connected to another host after {connected} s, "
          f"the slider's move answered there after "
          f"{', '.join(f'{p:.1f}' for p in pages)} s; new sessions after the cut on "
          f"{sorted(x[2] for x in r['fresh'])}; host back in rotation {r['again'] and round(r['again'], 1)} s "
          f"after the link came up; load average {r['load'][0]} -> {r['load'][1]} ({os.cpu_count()} cores)")
    # (a) the cut host's students: a working page from another host within 10 s of the cut
    for b, holder in zip(r["back"], r["moved"]):
        assert holder and holder != victim, f"a reconnected session is not held by a live host: {holder!r}"
        assert b["cookie"] == f"lab_replica={holder}", ("the cookie follows the session", b["cookie"], holder)
    assert max(pages) <= RECONNECT_WITHIN, (
        f"students of the cut host got a working page from another host {max(pages):.1f} s after the cut "
        f"(all: {[round(p, 1) for p in pages]}); the issue asks for {RECONNECT_WITHIN:.0f} s")
    # (b) no new session on the cut host
    assert all(x[2] and x[2] != victim for x in r["fresh"]), [x[2] for x in r["fresh"]]
    assert all(x[1] == f"lab_replica={x[2]}" for x in r["fresh"]), [(x[1], x[2]) for x in r["fresh"]]
    # (c) the other hosts' students: same websocket, same session, on the same replica, a rerun answers
    assert all(all(u) for u in r["unchanged"]), (
        "(websocket still open, same session id, no error, same replica holds it) per session", r["unchanged"])
    # the host takes new sessions again once its link is back
    assert r["again"] is not None, f"no new session on {victim} within 90 s of its link coming back"


@pytest.mark.browser
def test_a_browser_tab_on_the_cut_host_reconnects_to_another_host(hosts):
    """The same cut seen by Streamlit's own frontend in Chromium: a tab whose session is on the cut host notices
    (nginx closes its websocket) and reconnects through nginx to another host; the student's move of the slider
    (as soon as the tab is connected again) is answered there (a script_finished on the new websocket) within
    10 s of the cut."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements-dev.txt)")
    from devkit.browser import CHROME_ARGS, CHROMIUM, IDLE
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: tests/install_system.sh")
    h, i = hosts, 1
    victim = h.upstream[i]
    finished: list[tuple[int, float]] = []          # (websocket number, time) of each script_finished
    opened: list[float] = []                        # when each websocket opened

    def watch(ws) -> None:
        n = watch.count = getattr(watch, "count", 0) + 1
        opened.append(time.monotonic())

        def frame(payload) -> None:
            if isinstance(payload, (bytes, bytearray)):
                m = ForwardMsg()
                m.ParseFromString(bytes(payload))
                if m.WhichOneof("type") == "script_finished":
                    finished.append((n, time.monotonic()))
        ws.on("framereceived", frame)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        try:
            ctx = browser.new_context()
            ctx.add_cookies([{"name": "lab_replica", "value": victim, "url": h.url}])      # a returning student
            page = ctx.new_page()
            page.on("websocket", watch)
            page.goto(f"{h.url}/{PAGE}?{QUERY}", timeout=180_000)
            page.wait_for_selector(IDLE, timeout=180_000)
            page.get_by_text(WIDGET).first.wait_for(timeout=120_000)
            cookie = lambda: {c["name"]: c["value"] for c in ctx.cookies()}.get("lab_replica")     # noqa: E731
            assert cookie() == victim and finished, (cookie(), finished)
            sockets = watch.count
            t_cut = time.monotonic()
            h.cut(i)
            try:
                took = moved = None
                while time.monotonic() - t_cut < 60 and took is None:
                    page.wait_for_timeout(100)                 # lets Playwright deliver the events
                    if moved is None and watch.count > sockets:
                        moved = time.monotonic() - t_cut       # connected again: the student moves the slider
                        slider = page.get_by_role("slider").first
                        slider.focus()
                        page.keyboard.press("ArrowRight")
                    after = [t for n, t in finished if n > sockets]
                    if after:
                        took = after[0] - t_cut
                assert moved is not None, "the tab opened no new websocket within 60 s of the cut"
                assert took is not None, (f"the tab reconnected {moved:.1f} s after the cut but the slider's move "
                                          "got no script_finished from the new replica within 60 s")
                page.wait_for_selector(IDLE, timeout=60_000)
                page.get_by_text(WIDGET).first.wait_for(timeout=30_000)
                now = cookie()
                load = _load()
            finally:
                h.restore(i)
            print(f"\nhosts, Chromium: a tab on the cut host {victim} reconnected to {now} {moved:.1f} s after the "
                  f"cut; its slider's move answered there {took:.1f} s after the cut (load average {load}, "
                  f"{os.cpu_count()} cores)")
            assert now in h.upstream and now != victim, f"the tab's cookie names {now!r} after the reconnect"
            assert page.locator("[data-testid='stException']").count() == 0
            assert took <= RECONNECT_WITHIN, (f"the tab got a working page from another host {took:.1f} s after "
                                             f"the cut; the issue asks for {RECONNECT_WITHIN:.0f} s")
        finally:
            browser.close()
