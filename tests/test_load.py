"""The headless load-test client (bench/load.py) still speaks Streamlit's protocol: on a fresh
server, two sessions open the sampling page, read the "Number of draws" slider of its live section from
the deltas, move it, and get a finished rerun whose figures changed. deploy/: nginx in front of two
replicas keeps a session on the replica its cookie names.

Functional checks only: how long these take is measured by `python -m bench --only serve`."""
import asyncio
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from bench.load import Session, rss_mib, run_load, serve, server_env

pytestmark = pytest.mark.slow                                           # each module starts servers


@pytest.fixture(scope="module")
def srv():
    """One server for the module, fresh for the first test; one training at a time (the last test starts one)."""
    with serve(env=server_env(LAB_MAX_TRAININGS="1")) as s:
        yield s


def test_two_headless_sessions_read_move_widget_and_get_finished_rerun(srv):
    async def one(i: int):
        s = Session(srv.url, timeout=60)
        try:
            await s.open("sampling", "text=the%20bear%20ate%20the")
            assert s.page_hash, "no new_session with the page's script hash"
            w = s.widget("Number of draws")
            assert (w.kind, w.label) == ("slider", "Number of draws") and w.fragment_id   # lives in a fragment
            before = dict(s.charts)
            await s.change("Number of draws")
            assert s.charts != before, "the server did not see the moved slider"
            assert not s.errors and not s.client_notes
        finally:
            await s.close()

    async def both():
        await asyncio.gather(one(0), one(1))

    asyncio.run(both())
    r = run_load(srv.url, 2, srv.pids, reruns=2, think=0.1, timeout=60)
    assert not r.errors and len(r.rerun_times) == 4 and len(r.open_times) == 2
    assert r.rss[0] > 50                                           # read from /proc for the server pid
    assert rss_mib([srv.pids[0]])[1] >= r.rss[0] * 0.99           # peak >= current


def _xsrf_token(url: str) -> str:
    """Streamlit's XSRF cookie, which it sets on /_stcore/health (uploads must send it back, cookie and header)."""
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=10) as r:
        for c in r.headers.get_all("Set-Cookie") or []:
            if c.startswith("_streamlit_xsrf="):
                return c.split(";")[0].split("=", 1)[1]
    raise AssertionError(f"{url} set no _streamlit_xsrf cookie")


def _upload(url: str, session_id: str, token: str, cookie: str = "") -> tuple[int, str]:
    """PUT a one-byte file for this session id, as st.file_uploader does: (status, body). A Streamlit
    server answers 204 only for a session it holds, else 400 'Invalid session_id'."""
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="probe.txt"\r\n'
            f"Content-Type: text/plain\r\n\r\nx\r\n--{boundary}--\r\n").encode()
    cookies = "; ".join(c for c in (cookie, f"_streamlit_xsrf={token}") if c)
    req = urllib.request.Request(f"{url}/_stcore/upload_file/{session_id}/probe-{uuid.uuid4().hex[:8]}", data=body,
                                 method="PUT", headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                                                        "Cookie": cookies, "X-Xsrftoken": token})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def test_upload_probe_tells_which_server_holds_a_session(srv):
    """The probe the nginx test relies on: a server accepts an upload for its own session, refuses an unknown id."""
    async def go():
        s = Session(srv.url, timeout=60)
        try:
            await s.open("sampling", "text=the%20bear%20ate%20the")
            assert s.session_id, "no session id in new_session"
            token = _xsrf_token(srv.url)
            assert _upload(srv.url, s.session_id, token)[0] == 204
            status, body = _upload(srv.url, str(uuid.uuid4()), token)
            assert status == 400 and "Invalid session_id" in body, (status, body)
        finally:
            await s.close()

    asyncio.run(go())


def test_nginx_front_sets_replica_cookie_and_routes_session_to_that_replica():
    """deploy/: 2 replicas behind nginx; the cookie set on the first answer names a replica, later requests
    with it stay there, and a websocket session opened through nginx with it lives on that replica: asked
    directly, that replica accepts an upload for the session and the other answers 'Invalid session_id'."""
    from deploy import NGINX, cluster

    if not Path(NGINX).exists():
        pytest.skip(f"nginx is not installed at {NGINX} (apt-get install nginx, or set NGINX=/path/to/nginx)")
    with cluster(2) as c:
        with urllib.request.urlopen(c.url + "/", timeout=30) as r:
            cookie = r.headers["Set-Cookie"].split(";")[0]
        name, addr = cookie.split("=", 1)
        assert name == "lab_replica"
        by_addr = {f"127.0.0.1:{r.port}": r for r in c.replicas}
        assert addr in by_addr, (addr, sorted(by_addr))
        req = urllib.request.Request(c.url + "/_stcore/health", headers={"Cookie": cookie})
        for _ in range(5):                                             # sticky: same replica every time
            with urllib.request.urlopen(req, timeout=30) as r:
                assert r.status == 200 and f"lab_replica={addr};" in " ".join(r.headers.get_all("Set-Cookie"))

        async def one() -> None:
            s = Session(c.url, timeout=60, headers={"Cookie": cookie})
            try:
                await s.open("sampling", "text=the%20bear%20ate%20the")
                await s.change("Number of draws")
                assert s.session_id and not s.errors
                mine = by_addr[addr]
                other = next(r for r in c.replicas if r is not mine)
                token = _xsrf_token(mine.url)
                assert _upload(mine.url, s.session_id, token)[0] == 204, "the cookie's replica does not hold the session"
                status, body = _upload(other.url, s.session_id, token)
                assert status == 400 and "Invalid session_id" in body, ("the other replica", status, body)
                status, body = _upload(c.url, s.session_id, token, cookie)         # through nginx: follows the cookie
                assert status == 204, ("through nginx with the cookie", status, body)
            finally:
                await s.close()

        asyncio.run(one())


def test_full_rerun_stays_on_the_opened_page_and_a_button_click_starts_a_training(srv):
    """A widget outside any fragment reruns the whole app: the client must name the page that ran (the
    navigation message's hash, not app.py's), or the rerun lands on the home page. A button press is a trigger
    for one rerun: pressing Start on the Train page starts a training (its Stop button becomes enabled)."""
    async def go():
        s = Session(srv.url, timeout=60)
        try:
            await s.open("sampling", "text=the%20bear%20ate%20the")
            page = s.page_hash
            assert s.widget("Device").fragment_id == ""                 # a full rerun, not a fragment's
            await s.change("Device", "cpu")
            assert s.page_hash == page
            device = s.widget("Device")
            s.widgets = {device.id: device}                              # forget what was drawn
            await s.change("Device", "auto")
            assert s.widget("Number of draws")                           # drawn again: still the Sampling page
            await s.open("train")
            assert s.disabled("Stop")
            await s.click("Start a new training")
            assert not s.disabled("Stop"), "the click did not start a training"
            await s.click("Stop")
            assert not s.errors
        finally:
            await s.close()

    asyncio.run(go())
