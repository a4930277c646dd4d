"""A class-sized flood, small enough for CI (bench/flood.py; `python -m bench --only flood` is the full size):
six sessions open the Attention page at once (two in headless Chromium, four by Streamlit's websocket protocol,
bench/load.py's client: what the server does for a student, without six browsers on the server's own two cores),
each with a DISTINCT 512-token text, on a random
folder model whose traces are large next to a deliberately small trace budget (LAB_TRACE_BUDGET_MB=58: about the
smallest that admits every length up to 512 tokens, since a full 256-token trace of this model and its working memory
are 57.8 MiB by the admission's estimates; while one 512-token trace runs (9.2 MiB kept, 30 MiB working) two finished
ones fit beside it, not six), on one server, while one more session moves a slider on a built-in model.

What it asserts: the server's resident memory (its process and children, sampled every 0.5 s) never passes what
the idle server held with its models loaded plus the trace budget plus 0.5 GiB; and every page draws its attention
figure (directly, or after showing the queue message), within a generous deadline. (Before compact traces, a
full 512-token trace of this model was 170 MiB by the same estimate, and six pages went over the bound.)
No timing bound: how long it takes is the bench's figure.
"""
import pytest

from bench.flood import GIB, MIB, distinct_texts, make_folder_model, run_flood

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SESSIONS, TOKENS, BUDGET_MB, BROWSERS = 6, 512, 58, 2


@pytest.fixture(scope="module")
def flood(tmp_path_factory):
    folder = make_folder_model(tmp_path_factory.mktemp("flood-model"), TOKENS, layers=6, heads=12, d=384, vocab=2000)
    # the queue's own give-up time as long as the test's deadline: on a loaded machine six traces may take minutes,
    # and this test is about memory and drawing, not about LAB_TRACE_WAIT_S (300 s by default)
    return run_flood(SESSIONS, TOKENS, folder, others=1, deadline=900,
                     env={"LAB_TRACE_BUDGET_MB": str(BUDGET_MB), "LAB_TRACE_WAIT_S": "900"},
                     texts=distinct_texts(SESSIONS, TOKENS, 2000), browsers=BROWSERS)


def test_flood_fixture_uses_distinct_texts_the_small_budget_and_two_browser_tabs(flood):
    assert len(set(distinct_texts(SESSIONS, TOKENS, 2000))) == SESSIONS
    assert flood.budget == BUDGET_MB * MIB
    assert len(flood.samples) >= 4, "the sampler took too few RSS samples to mean anything"
    assert sum(v.browser for v in flood.visits) == BROWSERS, "not the planned number of Chromium tabs"


def test_server_rss_stays_within_idle_server_plus_trace_budget_plus_half_a_gib(flood):
    bound = flood.rss_before + flood.budget + GIB // 2
    over = [(round(t, 1), round(b / MIB)) for t, b in flood.samples if b > bound]
    assert not over, (f"RSS peak {flood.rss_peak / MIB:,.0f} MiB over {bound / MIB:,.0f} MiB (idle "
                      f"{flood.rss_before / MIB:,.0f} + budget {BUDGET_MB} + 512); first samples over (s, MiB): "
                      f"{over[:5]}; {flood.summary()}")


def test_every_flooding_page_draws_its_attention_figure(flood):
    missing = [(v.index, v.said) for v in flood.visits if v.drawn_s is None]
    assert not missing, f"pages that did not draw (index, what they showed): {missing}; {flood.summary()}"


def test_the_slider_session_kept_working_during_the_flood(flood):
    assert not flood.other_errors, flood.other_errors
    assert flood.other_reruns, "the other session never finished a slider rerun during the flood"
