"""Every figure builder: holds the data it was given, labels match tokens, bad shapes say what is wrong."""
import json

import numpy as np
import plotly.io as pio
import pytest

from viz.attention import attention_grid, attention_heatmap, grid_tile_at, logit_lens, token_attention, pool_max
from viz.layernorm import feature_distribution, gamma_beta, layernorm_stats, residual_norm
from viz.lstm import compare_next_token, lstm_gates_panel, lstm_heatmap
from viz.masks import mask_matrix, masking_stages, padding_mask
from viz.positional import pe_heatmap, pe_similarity, pe_waves
from viz.sampling import distribution_stages, final_distribution, generation_steps, sample_histogram

pytestmark = pytest.mark.unit

rng = np.random.default_rng(0)
TOKS = ["[BOS]", "the", "<b>cat</b>", "saw", "the", "dog"]          # repeated token and HTML on purpose


def spec(fig):
    """The figure as the browser gets it (numpy arrays decoded)."""
    return json.loads(pio.to_json(fig))


def z_of(trace):
    return np.asarray(trace.z, dtype=float)


def softmax_rows(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_attention_heatmap_holds_weights_and_escaped_unique_labels():
    w = softmax_rows(rng.normal(size=(6, 6)))
    fig = attention_heatmap(w, TOKS, TOKS, title="t")
    np.testing.assert_allclose(z_of(fig.data[0]), w, rtol=1e-6)
    ticks = fig.layout.xaxis.ticktext
    assert list(ticks) == ["[BOS]", "the", "&lt;b&gt;cat&lt;/b&gt;", "saw", "the", "dog"]
    assert len(set(fig.data[0].x)) == 6                                 # the two "the" stay apart
    assert "<b>cat" not in pio.to_json(fig)
    assert "%{z:.3f}" in fig.data[0].hovertemplate


@pytest.mark.parametrize("bad,msg", [(np.zeros((2, 3, 4)), "must be \\(queries, keys\\)"),
                                     (np.zeros((5, 6)), "got 6 query labels for 5")])
def test_attention_heatmap_rejects_bad_input(bad, msg):
    with pytest.raises(ValueError, match=msg):
        attention_heatmap(bad, TOKS, TOKS)


def test_attention_grid_small_is_exact_and_tiles_every_head():
    w = softmax_rows(rng.normal(size=(3, 4, 6, 6)))
    fig = attention_grid(w, TOKS, TOKS)
    z = z_of(fig.data[0])
    gap = 1
    for l in range(3):
        for h in range(4):
            r, c = l * (6 + gap), h * (6 + gap)
            np.testing.assert_allclose(z[r:r + 6, c:c + 6], w[l, h], rtol=1e-6)
            assert grid_tile_at(c + 2, r + 5, 6, 6) == (l, h)
    assert grid_tile_at(6, 0, 6, 6) is None                              # a gap column
    assert list(fig.layout.xaxis.ticktext) == [f"head {h}" for h in range(1, 5)]
    assert list(fig.layout.yaxis.ticktext) == [f"layer {l}" for l in range(1, 4)]
    assert fig.data[0].text[2, 3] == "layer 1, head 1<br>&lt;b&gt;cat&lt;/b&gt; → saw"   # hover names the cell


def decode_palette_png(uri: str) -> tuple[np.ndarray, np.ndarray]:
    """(indices, palette) of an 8-bit indexed PNG data URI with unfiltered rows, decoded independently."""
    import base64
    import struct
    import zlib

    data = base64.b64decode(uri.split(",", 1)[1])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        n, = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + n
    w, h, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 3)
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(h, w + 1)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:], np.frombuffer(chunks[b"PLTE"], np.uint8).reshape(-1, 3)


def test_attention_grid_gpt2_scale_is_an_image_of_every_weight_and_small():
    w = softmax_rows(rng.normal(size=(12, 12, 128, 128)).astype(np.float32))
    labels = [f"t{i}" for i in range(128)]
    fig = attention_grid(w, labels, labels)
    payload = pio.to_json(fig)
    assert len(payload) < 4_000_000
    idx, palette = decode_palette_png(fig.data[0].source)
    gap = 5
    assert idx.shape == (12 * 128 + 11 * gap, 12 * 128 + 11 * gap)
    for l, h in [(0, 0), (3, 7), (11, 11)]:                             # every tile holds its head's weights
        r, c = l * (128 + gap), h * (128 + gap)
        np.testing.assert_allclose(idx[r:r + 128, c:c + 128] / 254, w[l, h], atol=0.5 / 254 + 1e-6)
        assert grid_tile_at(c + 64, r + 64, 128, 128) == (l, h)
    assert (idx[128:128 + gap] == 255).all() and tuple(palette[255]) == (255, 255, 255)   # white gaps
    assert tuple(palette[0]) != tuple(palette[254])                                      # a real colour scale
    assert fig.data[1].marker.showscale and fig.data[1].marker.cmax == 1                 # colour bar 0..1
    assert list(fig.layout.xaxis.ticktext) == [f"head {h}" for h in range(1, 13)]


def test_pool_max_of_float16_weights_equals_the_float32_block_maximum():
    """Long texts keep float16 weights; pooling them on their bit patterns gives each block's largest value
    (ragged last blocks included, a -0.0 counted as 0), the same as pooling a float32 copy."""
    for Tq, Tk, f in [(64, 64, 8), (70, 45, 8), (9, 1, 4)]:
        w = softmax_rows(rng.normal(size=(2, 3, Tq, Tk)) * 3).astype(np.float16)
        w[0, 0, 0, 0] = -0.0
        got = pool_max(w, f)
        assert got.dtype == np.float16 and got.shape == (2, 3, -(-Tq // f), -(-Tk // f))
        ref = np.zeros(got.shape, np.float32)
        w32 = w.astype(np.float32)
        for i in range(got.shape[2]):
            for j in range(got.shape[3]):
                ref[:, :, i, j] = w32[:, :, i * f:(i + 1) * f, j * f:(j + 1) * f].max(axis=(2, 3))
        np.testing.assert_array_equal(got.astype(np.float32), np.maximum(ref, 0))
        np.testing.assert_array_equal(pool_max(w32, f), ref)


def test_attention_grid_of_1024_float16_tokens_pools_each_tile_to_128_pixels():
    w = softmax_rows(rng.normal(size=(2, 2, 1024, 1024)).astype(np.float32)).astype(np.float16)
    labels = [f"t{i}" for i in range(1024)]
    fig = attention_grid(w, labels, labels)
    idx, _ = decode_palette_png(fig.data[0].source)
    gap = 5
    assert idx.shape == (2 * 128 + gap, 2 * 128 + gap)
    pooled = w[1, 0].astype(np.float32).reshape(128, 8, 128, 8).max(axis=(1, 3))
    np.testing.assert_allclose(idx[128 + gap:, :128] / 254, pooled, atol=0.5 / 254 + 1e-3)


def test_token_attention_rows_are_heads():
    w = softmax_rows(rng.normal(size=(2, 3, 6, 6)))
    fig = token_attention(w, 2, TOKS, TOKS[2])
    np.testing.assert_allclose(z_of(fig.data[0]), w[:, :, 2, :].reshape(6, 6), rtol=1e-6)
    assert list(fig.data[0].y) == ["L1 H1", "L1 H2", "L1 H3", "L2 H1", "L2 H2", "L2 H3"]
    assert "&lt;b&gt;" in fig.layout.title.text
    with pytest.raises(ValueError, match="outside 0..5"):
        token_attention(w, 6, TOKS)


def test_logit_lens_writes_tokens_in_cells():
    p = rng.random((3, 6))
    toks = [["a", "<x>", "c", "d", "e", "f"]] * 3
    fig = logit_lens(toks, p, TOKS, ["emb", "L1", "L2"])
    np.testing.assert_allclose(z_of(fig.data[0]), p, rtol=1e-6)
    assert fig.data[0].text[0][1] == "&lt;x&gt;"
    with pytest.raises(ValueError, match="top_tokens must be 3 rows of 6"):
        logit_lens(toks[:2], p, TOKS, ["emb", "L1", "L2"])


def test_positional_figures():
    pe = rng.normal(size=(20, 8))
    fig = pe_waves(pe, [0, 3])
    np.testing.assert_allclose(np.asarray(fig.data[1].y), pe[:, 3], rtol=1e-6)
    assert [t.name for t in fig.data] == ["dim 0 (sin)", "dim 3 (cos)"]
    np.testing.assert_allclose(z_of(pe_heatmap(pe).data[0]), pe, rtol=1e-6)
    np.testing.assert_allclose(z_of(pe_similarity(pe).data[0]), pe @ pe.T, rtol=1e-5, atol=1e-5)
    cos = z_of(pe_similarity(pe, cosine=True).data[0])
    np.testing.assert_allclose(np.diag(cos), 1, rtol=1e-5)
    with pytest.raises(ValueError, match="outside 0..7"):
        pe_waves(pe, [8])


def test_mask_figures():
    allowed = np.tril(np.ones((6, 6), bool))
    fig = mask_matrix(allowed, TOKS, TOKS)
    np.testing.assert_array_equal(z_of(fig.data[0]), allowed.astype(float))
    assert fig.data[0].text[0][1] == "−∞" and fig.data[0].text[1][0] == ""
    s = rng.normal(size=(6, 6))
    w = softmax_rows(np.where(allowed, s, -np.inf))
    st = masking_stages(s, allowed, w, TOKS, TOKS)
    np.testing.assert_allclose(z_of(st.data[0]), s, rtol=1e-6)
    np.testing.assert_allclose(z_of(st.data[3]), w, rtol=1e-6)
    assert np.isnan(z_of(st.data[2])[0, 5]) and z_of(st.data[2])[5, 0] == pytest.approx(s[5, 0], rel=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        masking_stages(s, allowed[:5], w, TOKS, TOKS)
    no_scores = masking_stages(None, allowed, w, TOKS, TOKS)          # a model without raw scores: weights only
    assert [t.colorscale is not None for t in no_scores.data] and len(no_scores.data) == 2
    np.testing.assert_allclose(z_of(no_scores.data[1]), w, rtol=1e-6)
    assert "not available" in no_scores.layout.annotations[0].text
    # one score bar (panels 1 and 2 share the scale) in the gap right of panel 2, the weight bar right of panel 3,
    # each title beside its bar; the masked cells are grey, with no run-together "−∞" written in them
    bars = {t.colorbar.title.text: t for t in st.data if t.showscale is not False and t.colorbar.title.text}
    assert set(bars) == {"score", "weight"} and st.data[0].showscale is False
    p2, p3 = st.layout.xaxis2.domain, st.layout.xaxis3.domain
    assert p2[1] < bars["score"].colorbar.x < p3[0] and bars["weight"].colorbar.x > p3[1]
    assert all(b.colorbar.title.side == "right" for b in bars.values())
    assert all(t.texttemplate is None for t in st.data)
    pad = padding_mask([["a", "b", "c"], ["d", "<pad>", "<pad>"]], valid=[[1, 1, 1], [1, 0, 0]])
    np.testing.assert_array_equal(z_of(pad.data[0]), [[1, 1, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match="equally long"):
        padding_mask([["a", "b"], ["c"]], valid=[[1, 1], [1, 0]])


def test_layernorm_figures():
    stats = [rng.normal(size=(4, 6)) for _ in range(4)]
    fig = layernorm_stats(["L1 attention LN", "L1 feed-forward LN", "L2 attention LN", "final LN"], *stats, TOKS)
    for k in range(4):
        np.testing.assert_allclose(z_of(fig.data[k]), stats[k], rtol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        layernorm_stats(["a"] * 4, stats[0], stats[1][:3], stats[2], stats[3], TOKS)
    x_in, x_out = rng.normal(3, 5, 64), rng.normal(0, 1, 64)
    fd = feature_distribution(x_in, x_out)
    np.testing.assert_allclose(np.asarray(fd.data[0].x), x_in, rtol=1e-6)
    assert f"std {x_in.std():.2f}" in fd.data[0].name
    gb = gamma_beta(np.ones(8), np.zeros(8))
    assert list(gb.data[0].y) == [1.0] * 8
    norms = rng.random((3, 6))
    rn = residual_norm(norms, TOKS, ["embeddings", "after block 1", "after block 2"])
    assert len(rn.data) == 7 and np.allclose(rn.data[-1].y, norms.mean(1))


def _dist(V=40):
    p = rng.random(V) ** 4
    return p / p.sum()


def test_distribution_stages_colours_kept_and_cut():
    V = 40
    vocab = [f"w{i}" for i in range(V)]
    p = _dist(V)
    order = np.argsort(-p)
    topk = np.zeros(V, bool)
    topk[order[:5]] = True
    topp = np.zeros(V, bool)
    topp[order[:3]] = True
    final = np.where(topk & topp, p, 0)
    final /= final.sum()
    fig = distribution_stages(p, p, topk, topp, final, vocab, top_n=10, removed_mass=0.3, entropy=1.0)
    np.testing.assert_allclose(np.asarray(fig.data[1].y), p[order[:10]], rtol=1e-6)
    status = list(fig.data[1].customdata)
    assert status[:3] == ["kept"] * 3 and status[3:5] == ["cut by top-p"] * 2 and status[5] == "cut by top-k"
    np.testing.assert_allclose(np.asarray(fig.data[2].y)[:3], final[order[:3]], rtol=1e-6)
    assert "mass cut: 30.0%" in fig.layout.annotations[0].text
    with pytest.raises(ValueError, match="vocabulary has 40"):
        distribution_stages(p[:5], p, topk, topp, final, vocab)


def test_final_distribution_top_k_one_leaves_one_bar():
    vocab = ["a", "b", "<c>"]
    fig = final_distribution(np.array([0.0, 0.0, 1.0]), vocab)
    assert list(fig.data[0].x) == ["&lt;c&gt;"] and list(fig.data[0].y) == [1.0]


@pytest.mark.parametrize("tallest", [1.0, 0.9, 0.5, 0.05])
def test_bar_value_labels_get_room_above_the_tallest_bar_and_no_tick_past_1(tallest):
    """A value label drawn outside a bar (cliponaxis=False) at the top of the axis went over the title (Translate's
    "1.00" at 1280 px): the axis leaves a fifth of the tallest bar above it, blank past 1."""
    p = np.array([tallest, 1 - tallest, 0.0])
    for fig in (final_distribution(p, ["a", "b", "c"]),
                generation_steps([{"token": "a", "prob": float(tallest)}, {"token": "b", "prob": 0.01}])):
        lo, hi = fig.layout.yaxis.range
        assert lo == 0 and hi >= tallest * 1.2
        if hi > 1:
            assert max(fig.layout.yaxis.tickvals) == 1.0


def test_sample_histogram_and_generation_steps():
    vocab = ["a", "b", "c"]
    fig = sample_histogram(np.array([70, 30, 0]), np.array([0.7, 0.3, 0.0]), vocab)
    assert list(fig.data[0].y) == [0.7, 0.3]
    with pytest.raises(ValueError, match="all zero"):
        sample_histogram(np.zeros(3), np.array([0.7, 0.3, 0.0]), vocab)
    g = generation_steps([{"token": "<s>", "prob": 0.5, "top": [("<s>", 0.5), ("x", 0.2)]}])
    assert list(g.data[0].x) == ["1. &lt;s&gt;"] and "x: 0.200" in g.data[0].customdata[0]


def test_lstm_figures():
    v = rng.random((6, 5))
    fig = lstm_heatmap(v, TOKS, signed=False)
    np.testing.assert_allclose(z_of(fig.data[0]), v.T, rtol=1e-6)
    panel = lstm_gates_panel({"input gate": v, "cell state": v - 0.5}, TOKS)
    assert panel.data[1].zmid == 0 and panel.data[0].zmin == 0
    with pytest.raises(ValueError, match="same number of time steps"):
        lstm_gates_panel({"a": v, "b": v[:3]}, TOKS)
    vocab = [f"w{i}" for i in range(10)]
    p, q = _dist(10), _dist(10)
    cmp = compare_next_token({"LSTM": p, "Transformer": q}, vocab, top_n=3)
    shown = [vocab.index(x) for x in cmp.data[0].x]
    np.testing.assert_allclose(np.asarray(cmp.data[0].y), p[shown], rtol=1e-6)
    assert set(np.argsort(-p)[:3]) <= set(shown) and set(np.argsort(-q)[:3]) <= set(shown)


def test_long_sequences_label_every_nth_token_but_keep_every_cell():
    n = 128
    toks = [f"w{i}" for i in range(n)]
    w = np.full((n, n), 1 / n, dtype=np.float32)
    fig = attention_heatmap(w, toks, toks)
    ax = fig.layout.xaxis
    assert len(ax.tickvals) <= 48 and len(ax.tickvals) == len(ax.ticktext)
    assert ax.tickvals[0] == "0: w0" and ax.ticktext[1] == "3: w3"        # step ceil(128 / 48) = 3, index shown
    assert len(fig.data[0].x) == n and np.asarray(fig.data[0].z).shape == (n, n)
    short = attention_heatmap(w[:10, :10], toks[:10], toks[:10])
    assert list(short.layout.yaxis.ticktext) == toks[:10]                 # short texts: every token, as is


def test_over_256_positions_axes_are_numbered_with_every_nth_token_and_weights_compact():
    n = 1024
    toks = [f"<w{i}>" for i in range(n)]
    w = np.tril(np.ones((n, n), np.float32))
    w /= w.sum(1, keepdims=True)
    head = attention_heatmap(w, toks, toks)
    ax = head.layout.xaxis
    assert ax.type == "linear" and head.data[0].x is None                # positions 0..n-1, no category per token
    assert list(ax.tickvals[:2]) == [0, 22] and ax.ticktext[1] == "22: &lt;w22&gt;"     # ceil(1024 / 48) = 22
    z = np.asarray(head.data[0].z)                  # over 512 positions: each 2 x 2 block as its largest weight
    assert z.dtype == np.uint8 and z.shape == (n // 2, n // 2)
    assert (head.data[0].x0, head.data[0].dx) == (0.5, 2)               # block i drawn over positions 2i, 2i + 1
    np.testing.assert_allclose(z / 255 * w.max(), w.reshape(512, 2, 512, 2).max(axis=(1, 3)), atol=w.max() / 255)
    mid = attention_heatmap(w[:300, :300], toks[:300], toks[:300])      # 257..512 positions: every cell, 255 levels
    assert np.asarray(mid.data[0].z).shape == (300, 300) and mid.data[0].dx == 1
    one = token_attention(np.stack([np.stack([w, w])]).astype(np.float16), 700, toks, toks[700])
    rows = np.asarray(one.data[0].z)
    assert rows.dtype == np.float32 and rows.shape == (2, n) and one.layout.xaxis.type == "linear"
    np.testing.assert_allclose(rows[1], w[700], atol=1e-3)
    spec = pio.to_json(one)
    assert '"bdata"' in spec and len(spec) < 2 * n * 4 * 4 / 3 + 15_000   # a base64 typed array, not a list of numbers


def test_lstm_panel_can_show_the_most_changing_units_only():
    from viz.lstm import most_changing_units

    t = np.linspace(0, 1, 6)[:, None]
    cell = np.zeros((6, 5), np.float32)
    cell[:, 3] = 3 * t[:, 0]            # changes most
    cell[:, 1] = t[:, 0]                # second
    cell[:, 4] = 0.5                    # constant: no change
    assert list(most_changing_units(cell, 2)) == [3, 1]
    gate = rng.random((6, 5)).astype(np.float32)
    fig = lstm_gates_panel({"input gate": gate, "cell state": cell}, TOKS, units=[3, 1])
    np.testing.assert_allclose(z_of(fig.data[0]), gate[:, [3, 1]].T, rtol=1e-6)   # rows = the chosen units
    assert list(fig.data[1].y) == ["unit 3", "unit 1"]
    np.testing.assert_allclose(z_of(fig.data[1]), cell[:, [3, 1]].T, rtol=1e-6)
    with pytest.raises(ValueError, match="unit numbers in 0..4"):
        lstm_gates_panel({"input gate": gate}, TOKS, units=[7])


def test_remembered_plotly_property_paths_parse_exactly_as_plotly_does():
    import plotly.basedatatypes as bd

    fast = bd._str_to_dict_path_full
    assert fast.lab_remembered
    for path in ["title_font_size", "xaxis.range", "marker.colorbar.title.text", "error_x.thickness", "a[2].b_c",
                 "updatemenus[0].buttons[1].args", "_leading", "trailing_", "x__y", "", "font"]:
        for _ in range(2):                                             # the second answer comes from memory
            got = fast(path)
            assert got == fast.original(path) and isinstance(got[1], list)
        got[1].append(99)                                              # a caller changing its list changes no other
        assert fast(path) == fast.original(path)


# ----------------------------------------------------------------------------- layout (tests/test_layout.py measures
# the same in a browser; these check the builders' decisions without one)
def test_every_titled_figure_leaves_the_toolbar_its_own_row_above_the_title():
    from viz.common import TOOLBAR

    figs = [attention_heatmap(softmax_rows(rng.normal(size=(6, 6))), TOKS, TOKS, title="a title"),
            pe_similarity(rng.normal(size=(8, 4)), title="Dot product between positions"),
            final_distribution(np.full(5, 0.2), list("abcde"), title="Step 3: next-word distribution")]
    for fig in figs:
        t = fig.layout.title
        assert (t.yref, t.y, t.yanchor) == ("container", 1, "top") and t.pad.t >= TOOLBAR
        assert fig.layout.margin.t >= TOOLBAR + t.font.size          # the title's line below the toolbar's row


def test_top_row_subplot_titles_sit_below_the_toolbar_row():
    from viz.common import TOOLBAR

    v = rng.uniform(size=(6, 4))
    for fig in (lstm_gates_panel({"input gate": v, "forget gate": v}, TOKS),
                layernorm_stats(["a", "b"], *[rng.normal(size=(2, 6))] * 4, TOKS),
                masking_stages(rng.normal(size=(6, 6)), np.tril(np.ones((6, 6), bool)),
                               softmax_rows(rng.normal(size=(6, 6))), TOKS, TOKS)):
        size = max(a.font.size for a in fig.layout.annotations)
        assert fig.layout.margin.t >= TOOLBAR + size


def test_projector_mode_scales_subplot_titles_ticks_and_keeps_the_toolbar_row():
    from viz.common import PROJECTOR_FONT, TOOLBAR, projector

    fig = masking_stages(rng.normal(size=(6, 6)), np.tril(np.ones((6, 6), bool)), softmax_rows(rng.normal(size=(6, 6))),
                         TOKS, TOKS)
    big = projector(fig)
    assert big.layout.annotations[0].font.size > fig.layout.annotations[0].font.size
    assert big.layout.xaxis.tickfont.size > fig.layout.xaxis.tickfont.size
    assert big.layout.font.size == PROJECTOR_FONT
    assert big.layout.margin.t >= TOOLBAR + big.layout.annotations[0].font.size


def test_masked_cells_are_written_only_where_they_fit():
    small = mask_matrix(np.tril(np.ones((6, 6), bool)), TOKS, TOKS)
    assert small.data[0].text[0][1] == "−∞"
    n = 40
    long = mask_matrix(np.tril(np.ones((n, n), bool)), [f"w{i}" for i in range(n)], [f"w{i}" for i in range(n)])
    assert long.data[0].text is None          # 40 keys: grey cells, no "−∞−∞−∞" run together


def test_lstm_gate_bars_name_their_ends_and_sit_beside_their_panel():
    v = rng.uniform(size=(6, 4))
    fig = lstm_gates_panel({"input gate": v, "forget gate": v}, TOKS)
    for k, t in enumerate(fig.data):
        assert not (t.colorbar.title and t.colorbar.title.text)           # no title to collide with unit labels
        assert list(t.colorbar.ticktext) == ["0 shut", "0.5", "1 open"]
        right_of = (fig.layout.xaxis if k == 0 else fig.layout.xaxis2).domain[1]
        assert right_of < t.colorbar.x < (fig.layout.xaxis2.domain[0] if k == 0 else 1.1)


def test_lstm_panel_in_three_columns_puts_the_gates_in_one_row_and_labels_units_and_words_once():
    """Projector mode's LSTM panel: the three gates in the first row, candidate / cell / hidden in the second; the
    panels of a row share their unit labels (left) and those of a column their word labels (bottom), so the space
    between two panels holds only the left one's colour bar."""
    from model.views import GATES

    gates = {name: rng.uniform(size=(6, 8)) for name in GATES}
    fig = lstm_gates_panel(gates, TOKS, units=[5, 1, 2], cols=3)
    assert [a.text for a in fig.layout.annotations] == list(GATES)
    assert [(t.xaxis, t.yaxis) for t in fig.data] == [("x", "y")] + [(f"x{i}", f"y{i}") for i in range(2, 7)]
    lay = fig.layout
    assert lay.yaxis.domain[0] > lay.yaxis4.domain[1]                        # gates above states
    assert lay.yaxis2.showticklabels is False and lay.yaxis3.showticklabels is False     # units named once per row
    assert lay.xaxis.showticklabels is False and lay.xaxis4.showticklabels is not False  # words once per column
    for k in (0, 1):                                   # each bar between its panel and the next one
        assert lay[f"xaxis{k + 1 if k else ''}"].domain[1] < fig.data[k].colorbar.x < lay[f"xaxis{k + 2}"].domain[0]
    assert list(fig.data[0].colorbar.ticktext) == ["0 shut", "1 open"]
    assert fig.layout.height == 320 * 2 + 100
    with pytest.raises(ValueError, match="cols"):
        lstm_gates_panel(gates, TOKS, cols=4)


def test_legends_of_the_training_figures_are_beside_the_plot_not_over_the_title():
    from viz.experiments import accuracy_by_distance, gradient_profiles, loss_curves, time_per_token

    d = np.arange(1, 6)
    figs = [loss_curves({"LSTM": {"steps": [1, 2], "train": [3, 2], "heldout_steps": [2], "heldout": [2.5]}}, "loss"),
            gradient_profiles({"LSTM": (d, 10.0 ** -d)}, "grad"), accuracy_by_distance(d, {"LSTM": d / 6}, "acc"),
            time_per_token(d, {"LSTM": d * 1e-6}, "time")]
    for fig in figs:
        lg = fig.layout.legend
        assert lg.x > 1 and lg.xanchor == "left" and lg.yanchor == "top" and lg.y <= 1


def test_log_gradient_axis_labels_whole_decades_only():
    from viz.experiments import gradient_profiles

    d = np.arange(1, 31)
    fig = gradient_profiles({"RNN (tanh)": (d, 10.0 ** -d)}, "grad")
    assert fig.layout.yaxis.dtick >= 5                                   # 30 decades: at most ~7 labels


def test_long_titles_break_into_two_lines_at_a_word():
    from viz.common import wrap_title

    assert wrap_title("Dot product between positions") == "Dot product between positions"
    two = wrap_title("learned (transformer-lm): similarity between positions")
    assert two == "learned (transformer-lm):<br>similarity between positions"


def test_colour_scales_are_perceptually_uniform_or_colour_blind_safe():
    from viz import common

    assert common.SEQUENTIAL in ("Cividis", "Viridis") and common.MAGNITUDE in ("Cividis", "Viridis")
    assert common.DIVERGING == "RdBu_r"
    w = softmax_rows(rng.normal(size=(6, 6)))
    scale = [c for _, c in attention_heatmap(w, TOKS, TOKS).data[0].colorscale]
    from plotly.colors import sequential

    assert scale == list(sequential.Cividis)
