"""The headless load-test client (bench/load.py) still speaks Streamlit's protocol: on a fresh
server, two sessions open the sampling page, read the "Number of draws" slider of its live section from
the deltas, move it, and get a finished rerun whose figures changed."""
import asyncio
import time

from bench.load import Session, rss_mib, run_load, serve, server_env


def test_two_headless_sessions_read_move_widget_and_get_finished_rerun():
    t_start = time.perf_counter()
    with serve() as srv:
        async def one(i: int):
            s = Session(srv.url, timeout=60)
            try:
                await s.open("sampling", "text=the%20bear%20ate%20the")
                assert s.page_hash, "no new_session with the page's script hash"
                w = s.widget("Number of draws")
                assert (w.kind, w.label) == ("slider", "Number of draws") and w.fragment_id   # lives in a fragment
                before = dict(s.charts)
                dt = await s.change("Number of draws")
                assert 0 < dt < 60
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
    assert time.perf_counter() - t_start < 30


def test_nginx_front_sets_replica_cookie_and_routes_session_to_that_replica():
    """deploy/: 2 replicas behind nginx; the cookie set on the first page names a replica, and a
    websocket session sent with it runs its script there (the cold replica's CPU rises, the
    other's does not)."""
    import shutil
    import urllib.request

    import pytest

    from bench.load import cpu_seconds
    from deploy import NGINX, cluster

    if not shutil.which(NGINX) and not __import__("os").path.exists(NGINX):
        pytest.skip("nginx not installed (apt-get install nginx-light)")
    t_start = time.perf_counter()
    with cluster(2) as c:
        with urllib.request.urlopen(c.url + "/") as r:
            cookie = r.headers["Set-Cookie"].split(";")[0]
        addr = cookie.split("=", 1)[1]
        ports = [r.port for r in c.replicas]
        assert addr in {f"127.0.0.1:{p}" for p in ports}
        req = urllib.request.Request(c.url + "/_stcore/health", headers={"Cookie": cookie})
        for _ in range(5):                                             # sticky: same replica every time
            with urllib.request.urlopen(req) as r:
                assert r.status == 200 and f"lab_replica={addr};" in " ".join(r.headers.get_all("Set-Cookie"))
        cpu0 = [cpu_seconds([p]) for p in c.pids]

        async def one():
            s = Session(c.url, timeout=60, headers={"Cookie": cookie})
            try:
                await s.open("sampling", "text=the%20bear%20ate%20the")
                await s.change("Number of draws")
            finally:
                await s.close()

        asyncio.run(one())
        used = [cpu_seconds([p]) - c0 for p, c0 in zip(c.pids, cpu0)]
        mine = ports.index(int(addr.rsplit(":", 1)[1]))
        assert used[mine] > 1.0 > used[1 - mine], used                 # the first visit imports torch there
    assert time.perf_counter() - t_start < 30


def test_full_rerun_stays_on_the_opened_page_and_a_button_click_starts_a_training():
    """A widget outside any fragment reruns the whole app: the client must name the page that ran (the
    navigation message's hash, not app.py's), or the rerun lands on the home page. A button press is a trigger
    for one rerun: pressing Start on the Train page starts a training (its Stop button becomes enabled)."""
    with serve(env=server_env(LAB_MAX_TRAININGS="1")) as srv:
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
