"""Views: traces turned into numpy objects ready to draw. Pages pick a view and a figure; they do no maths.

Every function here takes a model and/or a `Run` and returns plain Python and numpy (never tensors),
so viz/ can draw it and the tests can check it without Streamlit. An explicit `None` (raw scores a
model cannot give, a table a model does not have) is a state the page says in words.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .nets import sampling
from .api import (Generation, LabModel, LogitLens, NextToken, PaddedBatch, PositionInfo, RawScores, Run,
                  Translates)
from .errors import InputError
from .trace import ROLES, AttentionStack, CompactLayerNormTrace, default_query, head_weights

def _np(t) -> np.ndarray:
    return t.detach().float().cpu().numpy()


# ----------------------------------------------------------------------------- attention
@dataclass(frozen=True)
class AttentionView:
    """An attention stack of a run (role, causality, token labels: the trace's AttentionStack), ready to draw: its
    weights as numpy arrays, or for a compact trace (a long Hugging Face text) the pooled grid it keeps, with one
    head and one query's rows recomputed when asked.

    A view copies nothing it does not have to: `layers` are the trace's own tensors seen as numpy (float32, or
    float16 for long texts), so a view is made from a cached run on every page run instead of being cached beside it
    (where it would hold the run's tensors a second time, past the run's eviction). `weights` stacks them (a copy):
    for a figure or a download, built once."""

    stack: AttentionStack
    layers: tuple[np.ndarray, ...] | None   # per layer (H, Tq, Tk), rows sum to 1; None when compact
    pooled: np.ndarray | None = None   # compact: (L, H, ceil(Tq/pool), ceil(Tk/pool)) float16, each cell the largest
    pool: int = 1                      # weight of its pool x pool block

    @property
    def weights(self) -> np.ndarray | None:
        """(L, H, Tq, Tk) every weight, stacked (a copy; float16 for long texts); None when compact."""
        return None if self.layers is None else np.stack(self.layers)

    @property
    def role(self) -> str:       # "self", "encoder", "decoder", "cross"
        return self.stack.role

    @property
    def title(self) -> str:
        return self.stack.title

    @property
    def causal(self) -> bool:
        return self.stack.causal

    @property
    def compact(self) -> bool:
        return self.layers is None

    @property
    def query_tokens(self) -> list[str]:
        return list(self.stack.query_tokens)

    @property
    def key_tokens(self) -> list[str]:
        return list(self.stack.key_tokens)

    @property
    def n_layers(self) -> int:
        return len(self.stack)

    @property
    def n_heads(self) -> int:
        return (self.layers[0] if self.layers is not None else self.pooled).shape[-3]

    def grid(self) -> tuple[np.ndarray, int]:
        """(weights for the all-heads grid, the block size they are pooled by: 1 = not pooled)."""
        return (self.weights, 1) if self.layers is not None else (self.pooled, self.pool)

    def head(self, layer: int, head: int) -> np.ndarray:
        """(Tq, Tk) of one head; layer and head count from 0 (a compact trace recomputes it: float16 as it drew)."""
        if self.layers is not None:
            return self.layers[layer][head]
        return self.stack[layer].head_weights(head)[0].half().numpy()

    def head_mean(self, layer: int) -> np.ndarray:
        if self.layers is not None:
            return self.layers[layer].mean(0)
        return _np(self.stack[layer].weights[0].mean(0))

    def query_rows(self, query: int) -> np.ndarray:
        """(L, H, Tk): where one query token looks, in every head of every layer."""
        if self.layers is not None:
            return np.stack([w[:, query, :] for w in self.layers])
        return _np(self.stack.query_rows(query))

    def grid_data(self) -> dict:
        """What the grid draws, for a download: every weight, or for a compact trace the pooled cells it draws."""
        if self.layers is not None:
            return {"layers × heads × queries × keys": self.weights.astype("float32").round(6).tolist(),
                    "queries": self.query_tokens, "keys": self.key_tokens}
        return {f"layers × heads × query blocks × key blocks (largest weight of each {self.pool} × {self.pool} block)":
                self.pooled.astype("float32").round(6).tolist(), "queries": self.query_tokens,
                "keys": self.key_tokens, "block": self.pool}


def _layer_array(w) -> np.ndarray:
    """One layer's (H, Tq, Tk) weights of batch row 0 as numpy: the tensor's own memory where it is on the CPU
    (float16 traces stay float16: figures convert what they draw), a float32 copy otherwise."""
    w = w[0].detach()
    if w.device.type == "cpu" and w.dtype in (torch.float16, torch.float32):
        return w.numpy()
    return _np(w)


def attention_views(run: Run) -> dict[str, AttentionView]:
    """Every attention stack of the run, in the order encoder, decoder, cross, self (cheap: no weight is copied)."""
    out = {}
    for role in ROLES:
        st = run.trace.attention.get(role)
        if st is None or not len(st):
            continue
        if st.compact:
            out[role] = AttentionView(st, None, np.stack([a.pooled[0].numpy() for a in st]), st[0].pool)
            continue
        out[role] = AttentionView(st, tuple(_layer_array(a.weights) for a in st))
    return out


# ----------------------------------------------------------------------------- masks
@dataclass(frozen=True)
class MaskingView:
    query_tokens: list[str]
    key_tokens: list[str]
    allowed: np.ndarray                # (Tq, Tk) bool: True where the query may look at the key
    scores: np.ndarray | None          # (Tq, Tk) raw q.k/sqrt(d_k); None when the model cannot give them
    masked: np.ndarray | None          # scores with -inf where not allowed
    weights: np.ndarray                # after softmax


def head_pair(run_a: Run, run_b: Run, stack: str, layer: int, head: int
              ) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """One head of two runs of the same tokens (intact, intervened): their (Tq, Tk) float32 weights, held or
    recomputed (a compact run recomputes only this head), and the query and key tokens."""
    sa, sb = run_a.trace.attention[stack], run_b.trace.attention[stack]
    return (_np(head_weights(sa[layer], 0, head)), _np(head_weights(sb[layer], 0, head)),
            list(sa.query_tokens), list(sa.key_tokens))


def masked_role(run: Run) -> str:
    """The stack where a causal mask applies (the decoder, or a causal self stack); else the first stack."""
    causal = [r for r, s in run.trace.attention.items() if s.causal and r != "cross"]
    return causal[0] if causal else next(iter(run.trace.attention))



def _masking(a, b: int, head: int, q: list[str], k: list[str]) -> MaskingView:
    w = _np(head_weights(a, b, head))
    allowed = a.allowed[b].cpu().numpy().astype(bool) if a.allowed is not None else np.ones_like(w, dtype=bool)
    scores = None if a.scores is None else _np(a.scores[b, head])
    masked = None if scores is None else np.where(allowed, scores, -np.inf).astype(np.float32)
    return MaskingView(q, k, allowed, scores, masked, w)


def masking_view(run: Run, role: str, layer: int, head: int, m: LabModel | None = None) -> MaskingView:
    """One head's scores -> masked -> softmax (layer and head count from 0). A model that computes raw scores on
    demand (long Hugging Face runs keep q and k, not every head's scores) is asked for this head's."""
    st = run.trace.attention[role]
    v = _masking(st[layer], 0, head, list(st.query_tokens), list(st.key_tokens))
    if v.scores is None and isinstance(m, RawScores):
        s = m.scores(run, layer, head, role)
        if s is not None:
            scores = _np(s[0])
            v = MaskingView(v.query_tokens, v.key_tokens, v.allowed, scores,
                            np.where(v.allowed, scores, -np.inf).astype(np.float32), v.weights)
    return v


@dataclass(frozen=True)
class PaddedView:
    batch_tokens: list[list[str]]      # each row padded to the batch length
    valid: np.ndarray                  # (B, T) bool, True for real tokens
    padded_row: int                    # the row that got padding (the shorter text)
    stages: MaskingView                # that row's last layer, first head
    pad_token: str


def padded_view(m: PaddedBatch, texts: list[str]) -> PaddedView:
    pr = m.run_padded(texts)
    valid = np.array(pr.valid, dtype=bool)
    row = int(np.argmin(valid.sum(1)))
    role = next(iter(pr.trace.attention))
    last = pr.trace.attention[role][-1]
    toks = [t.tokens for t in pr.tokens]
    pad = next((tok for t, v in zip(toks[row], valid[row]) for tok in [t] if not v), "[PAD]")
    return PaddedView(toks, valid, row, _masking(last, row, 0, toks[row], toks[row]), pad)


# ----------------------------------------------------------------------------- positions
def sinusoidal_table(max_len: int, d_model: int) -> np.ndarray:
    from .nets.transformer import sinusoidal_encoding

    return sinusoidal_encoding(max_len, d_model).numpy()


def sinusoidal_curve(max_len: int, d_model: int, per_step: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The same formula between whole positions (per_step samples each), for drawing smooth waves."""
    x = np.arange((max_len - 1) * per_step + 1, dtype=np.float64) / per_step
    two_i = np.arange(0, d_model, 2, dtype=np.float64)
    angle = x[:, None] / np.power(10000.0, two_i / d_model)
    out = np.zeros((len(x), d_model))
    out[:, 0::2] = np.sin(angle)
    out[:, 1::2] = np.cos(angle[:, : d_model // 2])
    return x.astype(np.float32), out.astype(np.float32)


def position_kinds(infos: list[PositionInfo]) -> list[str]:
    return list(dict.fromkeys(p.kind for p in infos))


def sinusoidal_beside_learned(infos: list[PositionInfo]) -> np.ndarray | None:
    """The paper's table at the size of a model's learned table, to draw beside it (None without one)."""
    learned = next((p.table for p in infos if p.kind == "learned" and p.table is not None), None)
    return None if learned is None else sinusoidal_table(*learned.shape)


def position_tables(m) -> list[PositionInfo]:
    """The model's positional encodings (empty for a model without the capability)."""
    from .api import PositionTable

    return m.positions() if isinstance(m, PositionTable) else []


# ----------------------------------------------------------------------------- layer norm, residual stream
@dataclass(frozen=True)
class NormGroup:
    stack: str
    names: list[str]
    tokens: list[str]
    mean_in: np.ndarray                # (N, T)
    std_in: np.ndarray
    mean_out: np.ndarray
    std_out: np.ndarray
    x_in: list[np.ndarray] | None      # per norm (T, D); None for a compact trace (see `features`)
    x_out: list[np.ndarray] | None
    gamma: list[np.ndarray | None]     # per norm (D,)
    beta: list[np.ndarray | None]
    norms: tuple = ()                  # the traces, for `features` of a compact trace

    def features(self, norm: int, token: int) -> tuple[np.ndarray, np.ndarray]:
        """(D,) input and output vectors of one token at one norm (a compact trace recomputes that norm)."""
        if self.x_in is not None:
            return self.x_in[norm][token], self.x_out[norm][token]
        x_in, x_out = self.norms[norm].features(0, token)
        return _np(x_in), _np(x_out)


def norm_groups(run: Run) -> dict[str, NormGroup]:
    """The run's norms grouped by stack, in forward order."""
    by: dict[str, list] = {}
    for ln in run.trace.layernorms:
        by.setdefault(ln.stack or "self", []).append(ln)
    out = {}
    for stack in [r for r in ROLES if r in by] + [r for r in by if r not in ROLES]:
        lns = by[stack]
        toks = run.target_tokens if stack == "decoder" and run.target_tokens else run.tokens
        compact = any(isinstance(l, CompactLayerNormTrace) for l in lns)
        out[stack] = NormGroup(
            stack, [l.name for l in lns], list(toks),
            np.stack([_np(l.mean_in[0]) for l in lns]), np.stack([_np(l.std_in[0]) for l in lns]),
            np.stack([_np(l.mean_out[0]) for l in lns]), np.stack([_np(l.std_out[0]) for l in lns]),
            None if compact else [_np(l.x_in[0]) for l in lns], None if compact else [_np(l.x_out[0]) for l in lns],
            [None if l.gamma is None else _np(l.gamma) for l in lns],
            [None if l.beta is None else _np(l.beta) for l in lns], tuple(lns))
    return out


@dataclass(frozen=True)
class ResidualView:
    stack: str
    norms: np.ndarray                  # (L+1, T): L2 norm per token after the embeddings and each block
    tokens: list[str]
    layer_names: list[str]
    trend: str                         # "grows", "shrinks" or "mixed": mean norm, first block to last

    @property
    def heading(self) -> str:
        return {"grows": "The residual stream grows through the layers",
                "shrinks": "The residual stream shrinks through the layers"}.get(
            self.trend, "The size of the residual stream through the layers")


def residual_view(run: Run, stack: str) -> ResidualView | None:
    hidden = run.trace.hidden.get(stack)
    if not hidden:
        return None
    norms = np.stack([_np(h[0].norm(dim=-1)) for h in hidden])
    toks = run.target_tokens if stack == "decoder" and run.target_tokens else run.tokens
    means = norms.mean(1)
    steps = np.diff(means[1:]) if len(means) > 2 else np.diff(means)
    trend = "grows" if (steps > 0).all() else ("shrinks" if (steps < 0).all() else "mixed")
    names = ["embeddings"] + [f"after block {i}" for i in range(1, norms.shape[0])]
    return ResidualView(stack, norms, list(toks), names, trend)


@dataclass(frozen=True)
class LogitLensView:
    top_tokens: list[list[str]]        # (L+1) x T
    top_probs: np.ndarray              # (L+1, T)
    tokens: list[str]
    layer_names: list[str]


def logit_lens_view(m: LogitLens, run: Run) -> LogitLensView:
    toks, probs = m.logit_lens(run)
    labels = run.target_tokens if m.lens_stack == "decoder" and run.target_tokens else run.tokens
    names = ["embeddings"] + [f"after block {i}" for i in range(1, probs.shape[0])]
    return LogitLensView(toks, probs, list(labels), names)


# ----------------------------------------------------------------------------- LSTM
GATES = {"input gate": "input_gate", "forget gate": "forget_gate", "output gate": "output_gate",
         "candidate": "candidate", "cell state": "cell", "hidden state": "hidden"}


def lstm_layers(run: Run) -> list[dict[str, np.ndarray]]:
    """Per layer: gate name -> (T, U) values over the words."""
    return [{name: _np(getattr(lt, f)[0]) for name, f in GATES.items()} for lt in run.trace.lstm]


# ----------------------------------------------------------------------------- next token, sampling
def next_probs(run: Run) -> np.ndarray | None:
    return None if run.next_logits is None else _np(run.next_logits.float().softmax(-1))


def logits_array(run: Run) -> np.ndarray | None:
    return None if run.next_logits is None else _np(run.next_logits)


@dataclass(frozen=True)
class SamplingView:
    raw: np.ndarray
    scaled: np.ndarray
    topk_keep: np.ndarray
    topp_keep: np.ndarray
    probs: np.ndarray
    entropy: float
    raw_entropy: float
    removed_mass: float
    kept: int

    def top(self, n: int) -> list[int]:
        """Indices of the n most likely tokens of the final distribution (ties by the scaled probability)."""
        order = np.lexsort((-self.scaled, -self.probs))
        return [int(i) for i in order[:n] if self.probs[i] > 0] or [int(order[0])]


def sampling_view(logits, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                  greedy: bool = False) -> SamplingView:
    d = sampling.distribution(torch.as_tensor(logits), temperature, top_k, top_p, greedy=greedy)
    return SamplingView(_np(d.raw_probs), _np(d.scaled_probs), d.topk_keep.numpy(), d.topp_keep.numpy(),
                        _np(d.probs), float(d.entropy), float(d.raw_entropy), float(d.removed_mass),
                        int(d.keep.sum()))


def draw_counts(view: SamplingView, n: int, seed: int) -> np.ndarray:
    """How often each token comes up in n seeded draws from the final distribution (drawn from view.probs)."""
    return sampling.sample_counts(view.probs, int(n), seed=int(seed)).numpy()


def draw_one(view: SamplingView, seed: int) -> int:
    """One seeded draw from the final distribution."""
    return int(sampling.sample(view.probs, 1, seed=int(seed))[0])


def step_probs(step, vocab_size: int) -> np.ndarray:
    """A generation step's kept top tokens as a (V,) vector (zero elsewhere), for drawing."""
    p = np.zeros(vocab_size, dtype=np.float32)
    p[list(step.choice.top_ids)] = step.choice.top_probs
    return p


# ----------------------------------------------------------------------------- translation
@dataclass(frozen=True)
class TranslationStep:
    index: int                         # 1-based
    written: list[str]                 # the decoder's input when choosing: [BOS] + words so far
    token: str
    prob: float
    probs: np.ndarray                  # (V,) the step's top tokens (zero elsewhere)
    cross: np.ndarray | None           # (L, H, Ts): where this step's query looked in the source


@dataclass(frozen=True)
class TranslationView:
    text: str                          # the translation as a person reads it
    generation: Generation
    run: Run | None                    # traced pass over the translation (None when it has no words)
    steps: list[TranslationStep]


def translation_view(m: Translates, source: str, *, greedy: bool = True, temperature: float = 1.0, top_k: int = 0,
                     top_p: float = 1.0, seed: int = 0) -> TranslationView:
    """Generation and its traced run in one call: every step's distribution and cross-attention."""
    gen = m.generate(source, max_new_tokens=m.max_new_tokens(), greedy=greedy, temperature=temperature,
                     top_k=top_k, top_p=top_p, seed=seed)
    target = m.target_ids(gen)
    run = m.run(source, target) if len(target) > 1 else None
    cross = None
    if run is not None and "cross" in run.trace.attention:
        cross = np.stack([_np(a.weights[0]) for a in run.trace.attention["cross"]])     # (L, H, Tt, Ts)
    steps = []
    for i, s in enumerate(gen.steps):
        written = [m.vocab[j] for j in target[: i + 1]]
        row = None if cross is None else cross[:, :, min(i, cross.shape[2] - 1)]
        steps.append(TranslationStep(i + 1, written, s.token, s.prob, step_probs(s, len(m.vocab)), row))
    return TranslationView(m.decode(gen.new_ids), gen, run, steps)


# ----------------------------------------------------------------------------- step-by-step generation
def prefix_ids(m: LabModel, text: str, chosen: list[int]) -> list[int]:
    ids = m.tokenize(text).ids + list(chosen)
    if len(ids) >= m.max_len:
        raise InputError(f"The context is full ({m.max_len} tokens). Reset to start again.")
    return ids



# ----------------------------------------------------------------------------- the architecture as a map
@dataclass(frozen=True)
class Block:
    label: str                         # what the block is
    detail: str                        # its real sizes in this model
    page: str                          # the page that shows it ("" for none)


@dataclass(frozen=True)
class ArchitectureMap:
    columns: dict[str, list[Block]]    # column title -> blocks from the output (top) down to the input
    repeat: dict[str, int]             # column title -> how many times its middle blocks repeat (N)


def architecture_map(m: LabModel) -> ArchitectureMap:
    """The chosen model drawn as the paper's Figure 1 (or an LSTM's cell), from its real configuration."""
    from .api import MaskedFill, PositionTable, Recurrent

    a = m.arch
    V = len(m.vocab)
    if isinstance(m, Recurrent):
        col = [Block("Softmax over the vocabulary", f"{V:,} words", "sampling"),
               Block("LSTM cell: forget, input and output gates, cell state", f"{a.n_layers} layers × {a.d_model} units",
                     "lstm"),
               Block("Word embeddings", "one vector per word; no positional encoding (order is built in)", "")]
        return ArchitectureMap({"LSTM": col}, {"LSTM": a.n_layers})
    heads = f"{a.n_heads} heads" + (f", {a.n_kv_heads} key/value heads" if a.n_kv_heads and a.n_kv_heads != a.n_heads
                                     else "")
    norm = f"Add & {a.norm_kind or 'Norm'} ({a.norm}-norm)"
    pos = {"sinusoidal": "+ sinusoidal positional encoding", "learned": "+ learned positions",
           "rotary": "rotary positions (inside attention)", "relative": "relative positions (inside attention)",
           "none": "no positional encoding"}.get(a.position, a.position)
    emb = Block(f"Embeddings {pos}", f"d_model = {a.d_model}", "positional" if isinstance(m, PositionTable) else "")
    ffn = Block("Feed-forward", "per token, two linear layers", "layernorm")
    if isinstance(m, Translates):
        enc = [Block(norm, "", "layernorm"), ffn, Block(norm, "", "layernorm"),
               Block("Multi-head self-attention", heads, "attention"), emb]
        dec = [Block("Linear + softmax over the target vocabulary", f"{V:,} words", "translate"),
               Block(norm, "", "layernorm"), ffn, Block(norm, "", "layernorm"),
               Block("Cross-attention (queries: decoder, keys and values: encoder)", heads, "translate"),
               Block(norm, "", "layernorm"), Block("Masked multi-head self-attention", "causal mask · " + heads, "masks"),
               emb]
        return ArchitectureMap({"Encoder": enc, "Decoder": dec}, {"Encoder": a.n_encoder_layers, "Decoder": a.n_layers})
    causal = isinstance(m, NextToken)
    top = (Block("Linear + softmax over the vocabulary", f"{V:,} words", "sampling") if causal or isinstance(m, MaskedFill)
           else Block("No prediction head in this checkpoint", "hidden states only", ""))
    att = Block("Masked multi-head self-attention" if causal else "Multi-head self-attention",
                ("causal mask · " if causal else "") + heads, "attention")
    title = "Decoder" if causal else "Encoder"
    return ArchitectureMap({title: [top, Block(norm, "", "layernorm"), ffn, Block(norm, "", "layernorm"), att, emb]},
                           {title: a.n_layers})
