"""Fixed logits for the live sampling tests and benchmark (deterministic, no model needed)."""
import numpy as np


def case(name: str) -> np.ndarray:
    if name == "ties_kth":             # ties at the k-th value for k = 2, 3, 4; a tie at the top
        return np.array([3.0, 2.0, 2.0, 2.0, 1.0, 0.0, 3.0, -1.0, 2.0, 1.0, 1.0, -4.0], dtype=np.float32)
    if name == "small":                # V = 30 (top-k > V)
        return (np.random.default_rng(1).standard_normal(30) * 2).astype(np.float32)
    if name == "ties_many":            # many exact ties on a 500-word vocabulary (low temperatures)
        return np.round(np.random.default_rng(2).standard_normal(500) * 3).astype(np.float32)
    if name == "random50257":          # a GPT-2-sized vocabulary
        return (np.random.default_rng(3).standard_normal(50257) * 3).astype(np.float32)
    raise KeyError(name)


NAMES = ["ties_kth", "small", "ties_many", "random50257"]


def labels(V: int) -> list[str]:
    """Word labels, some of them hostile: they must show as text, never as markup."""
    out = [f"w{i}" for i in range(V)]
    hostile = ["<b>bold</b>", "<img src=x onerror=\"window.__pwned=1\">", "&amp;", " the", "\n", "", "<script>x</script>"]
    for j, h in enumerate(hostile):
        if j < V:
            out[j] = h
    return out
