"""A session keeps no traced run of its own between reruns (issue 19's flood): only the shared trace cache holds
runs, so its byte budget bounds them. The Attention page's fragments keep the page script's globals alive for the
session's life; when the page kept its run there, every session pinned a trace the cache had already let go of."""
import gc
import weakref
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.apptest


def test_attention_page_holds_no_run_once_the_cache_lets_go_and_a_fragment_rerun_traces_it_again():
    from app_pages.common import traces

    at = AppTest.from_file(str(ROOT / "lab.py"), default_timeout=120)
    at.session_state["text"] = "the keys to the old cabinet are on the table ."
    at.run()
    at.switch_page("app_pages/attention.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    cache = traces()
    with cache._lock:
        runs = [value for key, (value, _) in cache._items.items() if key[0] == "run"]
        assert runs, "the page's run is not in the shared trace cache"
        refs = [weakref.ref(r) for r in runs]
        del runs
        cache._items.clear()                       # as the budget would evict them
        cache._used = 0
    gc.collect()
    alive = [r() for r in refs if r() is not None]
    assert not alive, (f"{len(alive)} run(s) still held after the cache let go: "
                       f"{[type(o).__name__ for a in alive for o in gc.get_referrers(a)][:8]}")
    at.selectbox(key="head").set_value(2).run()    # the fragment takes its run from the cache again
    assert not at.exception, [e.message for e in at.exception]
    titles = [e.proto.spec for e in at.get("plotly_chart")]
    assert any("head 2" in t for t in titles)
