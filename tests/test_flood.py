"""A class-sized flood, small enough for CI (bench/flood.py; `python -m bench --only flood` is the full size):
six headless Chromium sessions open the Attention page at once, each with a DISTINCT 512-token text, on a random
folder model whose traces are large next to a deliberately small trace budget (LAB_TRACE_BUDGET_MB=128: about two
traces fit), on one server, while one more session moves a slider on a built-in model.

What it asserts: the server's resident memory (its process and children, sampled every 0.5 s) never passes what
the idle server held with its models loaded plus the trace budget plus 0.5 GiB; and every page draws its attention
figure (directly, or after showing the queue message), within a generous deadline. Unbounded (every session's
trace and views held at once), six such pages hold about 0.6 GiB more than the budget allows.
No timing bound: how long it takes is the bench's figure.
"""
import pytest

from bench.flood import GIB, MIB, distinct_texts, make_folder_model, run_flood

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SESSIONS, TOKENS, BUDGET_MB = 6, 512, 128


@pytest.fixture(scope="module")
def flood(tmp_path_factory):
    folder = make_folder_model(tmp_path_factory.mktemp("flood-model"), TOKENS, layers=6, heads=12, d=384, vocab=2000)
    # the queue's own give-up time as long as the test's deadline: on a loaded machine six traces may take minutes,
    # and this test is about memory and drawing, not about LAB_TRACE_WAIT_S (300 s by default)
    return run_flood(SESSIONS, TOKENS, folder, others=1, deadline=900,
                     env={"LAB_TRACE_BUDGET_MB": str(BUDGET_MB), "LAB_TRACE_WAIT_S": "900"},
                     texts=distinct_texts(SESSIONS, TOKENS, 2000))


def test_flood_fixture_uses_distinct_texts_and_the_small_budget(flood):
    assert len(set(distinct_texts(SESSIONS, TOKENS, 2000))) == SESSIONS
    assert flood.budget == BUDGET_MB * MIB
    assert len(flood.samples) >= 4, "the sampler took too few RSS samples to mean anything"


@pytest.mark.xfail(strict=False, reason=(
    "issue 19, not fixed: measured on the fixed Attention page, peak 1,215 MiB against 1,209 (idle 569 + 128 + 512) "
    "at load 24-34, 700 MiB after the flood. Probable cause, not yet proven: a run that a page script is still "
    "drawing is no longer counted once the trace cache has evicted it (model/serving/store.py counts what it holds "
    "and what is computing), and a forward pass's working memory is not in the estimate it reserves. Remove this "
    "mark when the peak is bounded."))
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
