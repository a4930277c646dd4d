"""Loading what a server should not build: malformed built-in configs give the load error and are remembered,
models over the budget are refused from their config and safetensors headers before anything is built, and no
file is ever unpickled without weights_only=True."""
import json
import re
import shutil
import struct
from pathlib import Path

import pytest

import model
from model.builtin import CHECKPOINTS
from model.errors import ModelLoadError
from model.serving.store import ModelStore, model_bytes_estimate, params_from_hf_config

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parent.parent


def _builtin_copy(tmp_path: Path, **model_changes) -> Path:
    folder = tmp_path / "tlm"
    shutil.copytree(CHECKPOINTS / "transformer-lm", folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"].update(model_changes)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize("change", [{"d_model": -5}, {"d_model": -8}, {"n_layers": 0}, {"h": 3}, {"max_len": "64"},
                                    {"dropout": float("nan")}, {"tie_embeddings": 1}])
def test_a_malformed_builtin_config_gives_the_load_error(tmp_path, change):
    folder = _builtin_copy(tmp_path, **change)
    with pytest.raises(ModelLoadError, match="Malformed checkpoint config"):
        model.load(str(folder), "cpu")


def test_a_malformed_config_is_remembered_like_any_failure(tmp_path):
    folder = _builtin_copy(tmp_path, d_model=-5)
    calls = []

    def loader(name, device):
        calls.append(name)
        return model.load(name, device)

    s = ModelStore(loader=loader, estimator=None, failure_ttl=60)
    for _ in range(3):
        with pytest.raises(ModelLoadError, match="Malformed"):
            s.get(str(folder), "cpu")
    assert len(calls) == 1


def test_any_exception_from_a_loader_becomes_a_remembered_load_error():
    calls = []

    def loader(name, device):
        calls.append(name)
        raise ValueError("d_model must be positive")

    s = ModelStore(loader=loader, estimator=None, failure_ttl=60)
    for _ in range(3):
        with pytest.raises(ModelLoadError, match="ValueError: d_model must be positive"):
            s.get("x")
    assert calls == ["x"]


def _never_build(name, device):
    raise AssertionError("the model was built")


def test_a_transformers_config_declaring_a_huge_model_is_refused_before_building(tmp_path):
    folder = tmp_path / "huge"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 50257, "n_embd": 65536,
                                                    "n_layer": 96, "n_head": 64, "n_positions": 8192}))
    assert params_from_hf_config(json.loads((folder / "config.json").read_text())) > 4e12
    s = ModelStore(budget_bytes=4 * 2**30, loader=_never_build)
    with pytest.raises(ModelLoadError, match="LAB_MODEL_BUDGET_GB"):
        s.get(str(folder), "cpu")


def test_safetensors_headers_count_against_the_budget_without_reading_the_weights(tmp_path):
    folder = tmp_path / "sparse"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 10, "n_embd": 8,
                                                    "n_layer": 1, "n_head": 2, "n_positions": 8}))
    header = json.dumps({"w": {"dtype": "F16", "shape": [100_000, 20_000], "data_offsets": [0, 4_000_000_000]}})
    with open(folder / "model.safetensors", "wb") as f:      # a header declaring 2 G parameters, and no data
        f.write(struct.pack("<Q", len(header)) + header.encode())
    assert model_bytes_estimate(str(folder)) == 4 * 2_000_000_000
    s = ModelStore(budget_bytes=4 * 2**30, loader=_never_build)
    with pytest.raises(ModelLoadError, match="budget"):
        s.get(str(folder), "cpu")


def test_a_builtin_format_config_declaring_a_huge_model_is_refused_before_building(tmp_path):
    folder = _builtin_copy(tmp_path, d_model=262144, h=4, d_ff=1048576, n_layers=64)
    s = ModelStore(budget_bytes=4 * 2**30, loader=_never_build)
    with pytest.raises(ModelLoadError, match="budget"):
        s.get(str(folder), "cpu")


def test_the_estimate_of_the_builtins_is_close_to_their_real_size():
    from model.serving.store import model_bytes

    for name in model.builtin_names():
        real = model_bytes(model.load(name, "cpu"))
        est = model_bytes_estimate(name)
        assert 0.8 * real <= est <= 1.2 * real, (name, est, real)


def test_the_hugging_face_loader_refuses_a_huge_config_before_any_skeleton(tmp_path, monkeypatch):
    """Through model.load (no store): the closed-form count is checked against free memory before even a
    meta-device model is made."""
    from model.hf import loading

    folder = tmp_path / "huge"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 50257, "n_embd": 65536,
                                                    "n_layer": 96, "n_head": 64, "n_positions": 8192}))
    monkeypatch.setattr(loading, "_auto", lambda head: _never_build(None, None))
    with pytest.raises(ModelLoadError, match="parameters and needs about"):
        model.load(str(folder), "cpu")


def test_every_torch_load_in_the_project_says_weights_only_true():
    """Pickle safety never relies on torch's default: any torch.load call passes weights_only=True."""
    bad = []
    for path in ROOT.rglob("*.py"):
        if any(part in (".git", ".venv", "node_modules") for part in path.parts):
            continue
        src = path.read_text(errors="replace")
        for m in re.finditer(r"torch\.load\(", src):
            if "weights_only=True" not in src[m.start():m.start() + 300]:
                bad.append(f"{path.relative_to(ROOT)}:{src.count(chr(10), 0, m.start()) + 1}")
    assert bad == []
