"""The headless load-test client (bench/load.py) still speaks Streamlit's protocol: on a fresh
server, two sessions open the sampling page, read the temperature slider from the deltas, move it,
and get a finished rerun whose output changed."""
import asyncio
import time

from bench.load import Session, rss_mib, run_load, serve


def test_two_headless_sessions_read_move_widget_and_get_finished_rerun():
    t_start = time.perf_counter()
    with serve() as srv:
        async def one(i: int):
            s = Session(srv.url, timeout=60)
            try:
                await s.open("sampling", "text=the%20bear%20ate%20the")
                assert s.page_hash, "no new_session with the page's script hash"
                w = s.widget("s_t")
                assert (w.kind, w.label) == ("slider", "Temperature") and w.fragment_id   # lives in a fragment
                assert s.value("s_t") == [1.0]
                before = s.metrics["Entropy (final)"]
                dt = await s.change("s_t", [0.3 if i == 0 else 2.5])
                assert 0 < dt < 60
                assert s.value("s_t") == [0.3 if i == 0 else 2.5]
                assert s.metrics["Entropy (final)"] != before, "the server did not see the moved slider"
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
