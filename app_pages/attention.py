"""Attention: every head of every layer, one head large, and where one token looks."""
import streamlit as st

from app_pages import common as c
from app_pages.breakit import break_it
from model import views
from viz.attention import attention_grid, attention_heatmap, token_attention

m, r = c.open_page(
    "attention", "Attention",
    "Each head asks, for every token (a **row**, the *query*), how much to look at every token (a "
    "**column**, the *key*) when building its new meaning. A row's weights sum to 1. Different heads "
    "learn different habits: some look at the previous word, some at the first token, some at the word "
    "that a pronoun refers to.", message="This model has no attention to show.")
seen = c.run_key(r)        # with the model, what the views and every figure below are computed from
stacks = views.attention_views(r)    # made from the run each time (no copy): a cached view would hold the run again
if not stacks:
    st.info(f"{c.md_escape(m.name)} has no attention: it reads one word at a time and keeps a memory. "
            "See the **LSTM** page, or pick a Transformer in the sidebar.")
    st.stop()
roles = list(stacks)
titles = {k: s.title for k, s in stacks.items()}
role = st.radio("Attention", roles, format_func=titles.get, horizontal=True,
                **c.labelled("stack", roles[0], options=roles)) if len(roles) > 1 else roles[0]
v = stacks[role]


def current_view() -> views.AttentionView:
    """This session's view of `role`: the page's own while the whole page runs, else (a fragment's own rerun, a
    download) from the shared trace cache, traced again (queued) if the budget evicted it meanwhile.

    The page drops its `r` and `v` when its run ends: a fragment keeps this script's globals alive for as long as
    the session lives, so a page that kept its run there would pin one trace per session past the server's trace
    budget (issue 19's flood: six 1,024-token pages held 5.9 GB, and still did after every tab had closed)."""
    pinned = globals().get("v")
    if pinned is not None:
        return pinned
    try:
        rr = c.get_run(m, c.text())                 # a cache hit unless the budget evicted it meanwhile
    except c.LabError as e:
        st.warning(c.md_escape(e))
        st.stop()
    return views.attention_views(rr)[role]


def grid_data() -> dict:
    """What the grid draws, for its download (every weight, or a compact trace's pooled cells)."""
    return current_view().grid_data()


if r.target_tokens:
    st.markdown(f"Source: {c.tokens_line(r.tokens)}  \nTarget so far (the decoder's input): "
                f"{c.tokens_line(r.target_tokens)}")
L, H = v.n_layers, v.n_heads

if not c.presenting():              # projector mode: the grid (the key figure) right under the heading
    st.subheader(f"All {L} layers × {H} heads")
show_grid = True
if L * H > 48:
    show_grid = st.toggle(f"Draw all {L * H} heads", help="Large models have many heads; the grid is drawn on demand.",
                          **c.bound("grid", L * H <= 144))
if show_grid:
    grid = c.cached_figure(m, "grid", (role, *seen),
                           lambda: attention_grid(*v.grid()[:1], v.query_tokens, v.key_tokens, pool=v.grid()[1]))
    c.plot(grid, key=f"grid_{role}", data=grid_data)
    st.caption("Rows of the grid are layers (1 = closest to the input), columns are heads; inside each cell, "
               "queries run down and keys across. Pick one below to see it large.")


@st.fragment
def one_head() -> None:
    v = current_view()
    st.subheader("One head, large")
    c1, c2 = st.columns(2)
    layers, heads = list(range(1, L + 1)), list(range(1, H + 1))
    layer = c1.selectbox("Layer", layers, **c.bound("layer", L, options=layers))
    head = c2.selectbox("Head", heads, **c.bound("head", 1, options=heads))
    c.plot(c.cached_figure(m, "head", (role, layer, head, *seen),
                           lambda: attention_heatmap(v.head(layer - 1, head - 1), v.query_tokens, v.key_tokens,
                                                     title=f"{v.title}: layer {layer}, head {head}")),
           key=f"head_{role}")
    if v.causal:
        st.caption("Masked (causal): every cell right of the diagonal is exactly 0, because a word may only look "
                   "at itself and the words before it.")
    break_it(m, "heads", "Break it: switch this head off", "brk_head", stack=role, layer=layer - 1,
               heads=[head - 1])


@st.fragment
def one_token() -> None:
    v = current_view()
    st.subheader("Where one token looks, in every head")
    q = v.query_tokens
    opts = list(range(len(q)))
    qi = st.selectbox("Query token", opts, format_func=lambda i: f"{i}: {q[i]}",
                      **c.labelled("q", views.default_query(q), options=opts))
    c.plot(c.cached_figure(m, "token", (role, qi, *seen), lambda: token_attention(v.query_rows(qi), None, v.key_tokens, q[qi])),
           key=f"tok_{role}")
    st.caption("One row per head (L = layer, H = head); each row is that head's attention from the chosen token.")


try:
    one_head()
    one_token()
finally:                  # nothing of the run stays pinned by this session between runs: see current_view
    del r, stacks, v
    grid = None
