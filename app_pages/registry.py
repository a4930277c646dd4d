"""The one list of the lab's pages, used by app.py (navigation), the tests and the benchmark.

Plain data, no Streamlit: `key` is the url path (``/attention``) and the file's stem in app_pages/.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageInfo:
    key: str          # url path and file stem
    title: str
    icon: str         # a Material icon name, as st.Page takes it
    blurb: str        # one line for the home page's card

    @property
    def path(self) -> str:
        return f"app_pages/{self.key}.py"


PAGES: list[PageInfo] = [
    PageInfo("attention", "Attention", ":material/grid_view:", "every head of every layer; where one word looks"),
    PageInfo("positional", "Positional encoding", ":material/waves:", "how a Transformer knows word order: sin/cos waves"),
    PageInfo("masks", "Masks", ":material/visibility_off:", "why a language model cannot peek at the future"),
    PageInfo("layernorm", "Layer norm", ":material/straighten:",
             "mean and spread of every token through the layers; the residual stream"),
    PageInfo("sampling", "Sampling", ":material/casino:", "temperature, top-k, top-p: the next word, live"),
    PageInfo("lstm", "LSTM", ":material/memory:", "gates, cell and hidden state over time, beside the Transformer"),
    PageInfo("translate", "Translate", ":material/translate:",
             "encoder-decoder translation step by step, with cross-attention"),
    PageInfo("experiments", "Break it", ":material/build:",
             "ablate heads, remove positions or the causal mask: what changes, measured"),
    PageInfo("patching", "Find the cause", ":material/biotech:",
             "activation patching: which head or position carries the difference between two texts"),
    PageInfo("train", "Train it live", ":material/model_training:",
             "a Transformer, an LSTM and an RNN learning side by side; why RNNs forget"),
]
KEYS = [p.key for p in PAGES]


def page(key: str) -> PageInfo:
    return next(p for p in PAGES if p.key == key)


@dataclass(frozen=True)
class Stop:
    """One stop of the lesson path: a page opened with preset settings, and what to say there."""

    title: str
    page: str                 # a page key
    params: dict              # query parameters the page reads: the model, the text, and the page's own settings
                              # (a stop resets every other page setting; each stop names its model)
    say: str                  # two sentences for the class
    minutes: int


LESSON: list[Stop] = [
    Stop("Why RNNs were replaced", "train", {"model": "lstm-lm", "text": "the keys to the old cabinet are on the table"},
         "A recurrent network reads one word after another, so it cannot be parallelised over a sentence, and what it "
         "read long ago must survive many steps of the same update. Under *Why RNNs forget* the page measures how much "
         "of the gradient at the last word reaches each earlier word (log scale), agreement accuracy by distance, and "
         "training time per token; start the quick preset to add a plain RNN beside the LSTM and the Transformer.", 6),
    Stop("LSTM gates", "lstm", {"model": "lstm-lm", "text": "the keys to the old cabinet are on the table", "units": "few"},
         "Three gates between 0 and 1 decide what to forget, what to write and what to show; the cell state is the "
         "memory they protect. Find a unit whose forget gate stays open (near 1) while the cell holds its value.", 4),
    Stop("Embeddings and positional encoding", "positional", {"model": "transformer-lm", "d": "128", "len": "64"},
         "Attention alone ignores word order, so each position adds a vector of sine and cosine waves to its word's "
         "embedding. Fast waves tell neighbours apart, slow ones tell the start from the end.", 5),
    Stop("Self-attention and multi-head", "attention", {"model": "transformer-lm",
                                                         "text": "the bear ate the honey because it was hungry"},
         "Every word builds its new meaning as a weighted average of the words it may see; each head learns its own "
         "weighting. Pick the query *it* and compare the heads.", 7),
    Stop("Masks", "masks", {"model": "transformer-lm", "text": "the bear ate the honey because it was hungry"},
         "A language model is trained to predict the next word, so it must not see it: the causal mask sets every "
         "score above the diagonal to −∞ before the softmax. Padding masks do the same for filler tokens.", 5),
    Stop("Add & Norm, feed-forward", "layernorm", {"model": "transformer-lm",
                                                 "text": "the bear ate the honey because it was hungry"},
         "Each sub-layer adds its result to the residual stream, and a LayerNorm keeps every token's vector at mean "
         "0 and spread 1. The logit lens shows what the stream would predict after each block.", 5),
    Stop("Encoder-decoder and cross-attention", "translate", {"model": "translator-en-fr",
                                                             "text": "the black cat ate the mouse", "step": "3"},
         "The encoder reads the whole English sentence; the decoder writes French one word at a time and looks back "
         "at the English through cross-attention. At step 3 it chooses *noir*: reading from *chat*, its last word so "
         "far, every head looks at *black*, although the words come in another order.", 7),
    Stop("Inference and sampling", "sampling", {"model": "transformer-lm", "text": "the bear ate the"},
         "The model gives every word a probability; temperature, top-k and top-p decide which words may be drawn. "
         "Drag the temperature and watch the distribution sharpen and flatten.", 6),
]
