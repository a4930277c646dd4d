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
    PageInfo("train", "Train it live", ":material/model_training:",
             "a Transformer, an LSTM and an RNN learning side by side; why RNNs forget"),
]
KEYS = [p.key for p in PAGES]


def page(key: str) -> PageInfo:
    return next(p for p in PAGES if p.key == key)
