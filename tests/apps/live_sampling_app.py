"""A tiny app for the live sampling browser tests: ?case=NAME&layout=one|three|four&large=1&t=&k=&p=
(four: the Sampling page's panels, one full-width chart above three compact ones)"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import streamlit as st  # noqa: E402

from components import live_sampling  # noqa: E402
from sampling_cases import case, labels  # noqa: E402

st.set_page_config(page_title="live sampling test", layout="wide")
q = st.query_params
x = case(q.get("case", "random50257"))
large = q.get("large") == "1"
layout = q.get("layout", "one")
got = []
if layout == "four":
    got.append(live_sampling(x, labels(x.size), key="live", large=large, title="Raw → final"))
if layout in ("three", "four"):
    cols = st.columns(3)
    for i, (t, k, p) in enumerate([(0.5, 0, 1.0), (1.0, 0, 1.0), (1.5, 0, 0.9)]):
        with cols[i]:
            got.append(live_sampling(x, labels(x.size), key=f"cmp{i}", temperature=t, top_k=k, top_p=p,
                                     compact=True, large=large, title=f"Setting {'ABC'[i]}"))
else:
    got += [live_sampling(x, labels(x.size), key="live", temperature=float(q.get("t", 1.0)),
                         top_k=int(q.get("k", 0)), top_p=float(q.get("p", 1.0)), large=large)]
st.code(json.dumps([s.as_kwargs() for s in got]), language=None)
