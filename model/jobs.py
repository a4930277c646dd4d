"""Train small models live, in a background thread, while a page watches.

One job trains a Transformer, an LSTM and a vanilla RNN side by side on the built-in English
corpus, each on the same batches, one optimiser step each in turn. The page never trains: it
starts a job, reads `job.snapshot()` from a poller, and refreshes `job.heartbeat()`.

    from model.jobs import MANAGER, JobLimitError
    job = MANAGER.start(owner="session-id", preset="quick")     # raises JobLimitError over the cap
    snap = job.snapshot()                                       # plain copy: curves, tokens/s, samples
    job.heartbeat()                                             # the page calls this on every poll
    job.stop(); MANAGER.resume(job)
    lab = trained_lab(job, "lstm")                              # usable like a built-in LabModel

A job stops by itself when its steps are done, when stopped (the flag is checked every step),
or when its heartbeat is older than `heartbeat_timeout` seconds (its page was closed). The
server runs at most `MANAGER.max_running` jobs at once (env LAB_MAX_TRAININGS, default 1).
"""
from __future__ import annotations

import copy
import json
import os
import random
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_model

from .api import LabError
from .lstm import LSTMConfig, LSTMLM
from .rnn import RNNConfig, RNNLM
from .tokenizer import WordTokenizer
from .transformer import TransformerConfig, TransformerLM

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
KINDS = ("transformer", "lstm", "rnn")
LABELS = {"transformer": "Transformer", "lstm": "LSTM", "rnn": "RNN (tanh)"}
TYPES = {"transformer": "transformer-lm", "lstm": "lstm-lm", "rnn": "rnn-lm"}


class JobLimitError(LabError):
    """Too many trainings are running on this server."""


# ----------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    steps: int
    batch: int
    seq_len: int
    lr: dict
    models: dict                   # kind -> config keywords
    eval_every: int = 20
    sample_every: int = 40
    warmup: int = 20


_SMALL = {
    "transformer": dict(d_model=64, h=4, d_ff=256, n_layers=2, dropout=0.0, pos_encoding="learned", norm="pre",
                        activation="gelu", tie_embeddings=True),
    "lstm": dict(d_embed=64, d_hidden=128, n_layers=1, dropout=0.0),
    "rnn": dict(d_embed=64, d_hidden=128, n_layers=1, dropout=0.0),
}
PRESETS: dict[str, Preset] = {
    "quick": Preset("quick", "about a minute on 2 CPU cores: small models (64-128 units), 500 steps of 16 windows "
                    "of 32 words", steps=500, batch=16, seq_len=32,
                    lr={"transformer": 3e-3, "lstm": 1e-2, "rnn": 3e-3}, models=_SMALL),
    "longer": Preset("longer", "a few minutes: the same models, 1,000 steps of 32 windows of 48 words",
                     steps=1000, batch=32, seq_len=48, lr={"transformer": 3e-3, "lstm": 1e-2, "rnn": 3e-3},
                     models=_SMALL, eval_every=50, sample_every=100),
    "tiny": Preset("tiny", "seconds: for tests", steps=40, batch=8, seq_len=16,
                   lr={"transformer": 3e-3, "lstm": 1e-2, "rnn": 3e-3},
                   models={"transformer": dict(_SMALL["transformer"], d_model=32, d_ff=64),
                           "lstm": dict(_SMALL["lstm"], d_embed=32, d_hidden=32),
                           "rnn": dict(_SMALL["rnn"], d_embed=32, d_hidden=32)}, eval_every=10, sample_every=20,
                   warmup=5),
}
VISIBLE_PRESETS = ("quick", "longer")


def build_model(kind: str, preset: Preset | str, vocab_size: int, pad_id: int = 0, max_len: int | None = None
                ) -> tuple[nn.Module, dict]:
    """A fresh model of the preset and the config dict it was built from."""
    p = PRESETS[preset] if isinstance(preset, str) else preset
    max_len = max_len or max(64, p.seq_len)
    m = dict(p.models[kind], vocab_size=vocab_size, pad_id=pad_id, max_len=max_len)
    if kind == "transformer":
        cfg = TransformerConfig.from_dict(dict(m, arch="decoder"))
        return TransformerLM(cfg), cfg.to_dict()
    if kind == "lstm":
        cfg = LSTMConfig.from_dict(m)
        return LSTMLM(cfg), cfg.to_dict()
    if kind == "rnn":
        cfg = RNNConfig.from_dict(m)
        return RNNLM(cfg), cfg.to_dict()
    raise ValueError(f"unknown model kind {kind!r}; choose from {', '.join(KINDS)}")


# ----------------------------------------------------------------------------- data
@lru_cache(maxsize=1)
def tokenizer() -> WordTokenizer:
    """The built-in LMs' word tokenizer, so live-trained models share their vocabulary."""
    return WordTokenizer.from_file(str(CHECKPOINTS / "transformer-lm" / "tokenizer.json"))


@lru_cache(maxsize=1)
def corpus() -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]:
    """(train, held-out) token ids of the built-in corpus ([BOS] sentence [EOS]); held-out: 100 sentences."""
    from . import corpora

    train, held = corpora.lm_datasets(30000, 2000, 0)
    tok = tokenizer()
    enc = lambda s: tuple(tok.encode(s, add_bos=True, add_eos=True).ids)    # noqa: E731
    return tuple(enc(s) for s in train), tuple(enc(s) for s in held[:100])


def windows(docs, length: int, batch: int, rng: random.Random) -> torch.Tensor:
    """(batch, length + 1) ids: each window starts at a sentence's [BOS] and runs on into the next ones."""
    from .train import lm_windows

    return lm_windows(docs, length, batch, rng)


def train_step(module: nn.Module, opt: torch.optim.Optimizer, batch: torch.Tensor, pad: int) -> float:
    logits = module(batch[:, :-1]).logits
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1), ignore_index=pad)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
    opt.step()
    return loss.item()


@torch.inference_mode()
def heldout_loss(module: nn.Module, docs, pad: int) -> float:
    """Mean nats per predicted token on the held-out sentences (padding ignored)."""
    n = max(len(d) for d in docs)
    x = torch.tensor([list(d) + [pad] * (n - len(d)) for d in docs])
    was = module.training
    module.eval()
    logits = module(x[:, :-1]).logits
    module.train(was)
    return float(F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1), ignore_index=pad))


@torch.inference_mode()
def sample_text(module: nn.Module, tok: WordTokenizer, seed: int, max_words: int = 16, temperature: float = 0.8) -> str:
    """A sentence drawn from the model after [BOS] (seeded, temperature 0.8)."""
    g = torch.Generator().manual_seed(seed)
    ids = [tok.bos_id]
    was = module.training
    module.eval()
    for _ in range(max_words):
        logits = module(torch.tensor([ids])).logits[0, -1] / temperature
        nxt = int(torch.multinomial(logits.softmax(-1), 1, generator=g))
        if nxt == tok.eos_id:
            break
        ids.append(nxt)
    module.train(was)
    return tok.decode(ids[1:])


# ----------------------------------------------------------------------------- the job
@dataclass
class Curve:
    steps: list[int] = field(default_factory=list)
    train: list[float] = field(default_factory=list)
    heldout_steps: list[int] = field(default_factory=list)
    heldout: list[float] = field(default_factory=list)


@dataclass
class JobSnapshot:
    """A copy of a job's progress, safe to read while it trains."""

    job_id: str
    status: str                          # "ready", "running", "stopping", "stopped", "done", "abandoned", "failed"
    step: int
    steps: int
    preset: str
    kinds: tuple[str, ...]
    curves: dict[str, Curve]
    tokens_per_s: dict[str, float]       # per model, over its own compute time
    samples: dict[str, list[tuple[int, str]]]
    seconds: float                       # wall time spent training so far
    message: str = ""

    @property
    def progress(self) -> float:
        return self.step / self.steps if self.steps else 0.0

    @property
    def running(self) -> bool:
        return self.status in ("running", "stopping")

    def curve_table(self) -> dict[str, dict[str, list]]:
        """Model label -> {"steps", "train", "heldout_steps", "heldout"} for viz.experiments.loss_curves."""
        return {LABELS[k]: {"steps": c.steps, "train": c.train, "heldout_steps": c.heldout_steps,
                            "heldout": c.heldout} for k, c in self.curves.items()}

    def latest(self) -> list[tuple[str, str, str, str]]:
        """Per model: (label, tokens/s, last training loss, last held-out loss), formatted."""
        out = []
        for k, c in self.curves.items():
            out.append((LABELS[k], f"{self.tokens_per_s[k]:,.0f}", f"{c.train[-1]:.3f}" if c.train else "–",
                        f"{c.heldout[-1]:.3f}" if c.heldout else "–"))
        return out


class TrainingJob:
    """Trains the chosen models in a background thread. All state changes are under self._lock."""

    def __init__(self, owner: str, preset: str = "quick", kinds: tuple[str, ...] = KINDS, seed: int = 0,
                 heartbeat_timeout: float = 60.0) -> None:
        if preset not in PRESETS:
            raise LabError(f"Unknown preset {preset!r}; choose from {', '.join(PRESETS)}.")
        bad = [k for k in kinds if k not in KINDS]
        if bad or not kinds:
            raise LabError(f"Unknown model kind(s) {bad}; choose from {', '.join(KINDS)}.")
        self.job_id, self.owner = uuid.uuid4().hex[:8], owner
        self.preset, self.kinds, self.seed = PRESETS[preset], tuple(kinds), seed
        self.heartbeat_timeout = heartbeat_timeout
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._beat = time.monotonic()
        tok = self.tok = tokenizer()
        torch.manual_seed(seed)
        self.models, self.configs, self.opts = {}, {}, {}
        for k in self.kinds:
            m, cfg = build_model(k, self.preset, tok.vocab_size, tok.pad_id)
            self.models[k], self.configs[k] = m.train(), cfg
            self.opts[k] = torch.optim.AdamW(m.parameters(), lr=self.preset.lr[k], betas=(0.9, 0.98), weight_decay=0.0)
        self.rng = random.Random(seed)
        self.status, self.step, self.message, self.seconds = "ready", 0, "", 0.0
        self.curves = {k: Curve() for k in self.kinds}
        self._compute = {k: 0.0 for k in self.kinds}
        self._tokens = 0
        self.samples: dict[str, list[tuple[int, str]]] = {k: [] for k in self.kinds}

    # -- called by pages
    def heartbeat(self) -> None:
        with self._lock:
            self._beat = time.monotonic()

    def stop(self) -> None:
        """Ask the worker to stop after its current step."""
        self._stop.set()
        with self._lock:
            if self.status == "running":
                self.status = "stopping"

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return JobSnapshot(self.job_id, self.status, self.step, self.preset.steps, self.preset.name, self.kinds,
                               {k: copy.deepcopy(c) for k, c in self.curves.items()},
                               {k: (self._tokens / t if t > 0 else 0.0) for k, t in self._compute.items()},
                               {k: list(v) for k, v in self.samples.items()}, self.seconds, self.message)

    def trained_modules(self) -> dict[str, nn.Module]:
        """Label -> the job's model (in eval mode), for measurements; only once the job is not running."""
        if self.alive:
            raise LabError("The training is still running: stop it (or let it finish) first.")
        return {f"{LABELS[k]} (trained live)": m.eval() for k, m in self.models.items()}

    # -- the worker
    def _launch(self) -> None:
        self._stop.clear()
        for m in self.models.values():
            m.train()
        with self._lock:
            self.status, self.message, self._beat = "running", "", time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"lab-train-{self.job_id}", daemon=True)
        self._thread.start()

    def _stale(self) -> bool:
        with self._lock:
            return time.monotonic() - self._beat > self.heartbeat_timeout

    def _run(self) -> None:
        p, pad = self.preset, self.tok.pad_id
        train_docs, held_docs = corpus()
        final = "done"
        try:
            if self.step == 0:
                self._evaluate()
            while self.step < p.steps:
                if self._stop.is_set():
                    final = "stopped"
                    break
                if self._stale():
                    final = "abandoned"
                    break
                t_step = time.perf_counter()
                batch = windows(train_docs, p.seq_len, p.batch, self.rng)
                lr_scale = min(1.0, (self.step + 1) / p.warmup)
                losses = {}
                for k in self.kinds:
                    for g in self.opts[k].param_groups:
                        g["lr"] = p.lr[k] * lr_scale
                    t0 = time.perf_counter()
                    losses[k] = train_step(self.models[k], self.opts[k], batch, pad)
                    dt = time.perf_counter() - t0
                    with self._lock:
                        self._compute[k] += dt
                with self._lock:
                    self.step += 1
                    self._tokens += p.batch * p.seq_len
                    self.seconds += time.perf_counter() - t_step
                    for k, v in losses.items():
                        self.curves[k].steps.append(self.step)
                        self.curves[k].train.append(v)
                if self.step % p.eval_every == 0 or self.step == p.steps:
                    self._evaluate()
                if self.step % p.sample_every == 0 or self.step == p.steps:
                    self._sample()
        except Exception as e:                                   # shown on the page, never a silent death
            final = "failed"
            with self._lock:
                self.message = f"{type(e).__name__}: {e}"
        with self._lock:
            self.status = final
            if final == "abandoned":
                self.message = (f"Stopped: its page sent no heartbeat for {self.heartbeat_timeout:.0f} s "
                                f"(the page was closed or left).")
        for m in self.models.values():
            m.eval()

    def _evaluate(self) -> None:
        _, held = corpus()
        for k, m in self.models.items():
            v = heldout_loss(m, held, self.tok.pad_id)
            with self._lock:
                self.curves[k].heldout_steps.append(self.step)
                self.curves[k].heldout.append(v)

    def _sample(self) -> None:
        for i, (k, m) in enumerate(self.models.items()):
            text = sample_text(m, self.tok, seed=self.seed * 1000 + self.step + i)
            with self._lock:
                self.samples[k].append((self.step, text))


class JobManager:
    """Starts jobs, at most max_running at once on this server."""

    def __init__(self, max_running: int = 1) -> None:
        self.max_running = max_running
        self._lock = threading.Lock()
        self._jobs: dict[str, TrainingJob] = {}

    def running(self) -> int:
        with self._lock:
            return sum(j.alive for j in self._jobs.values())

    def _check_cap(self) -> None:
        n = sum(j.alive for j in self._jobs.values())
        if n >= self.max_running:
            raise JobLimitError(f"{n} training{'s are' if n != 1 else ' is'} already running on this server "
                                f"(the limit is {self.max_running}, so the app stays responsive). Wait until it "
                                f"finishes or is stopped, then try again.")

    def start(self, owner: str, preset: str = "quick", kinds: tuple[str, ...] = KINDS, seed: int = 0,
              heartbeat_timeout: float = 60.0) -> TrainingJob:
        with self._lock:
            self._check_cap()
            job = TrainingJob(owner, preset, kinds, seed, heartbeat_timeout)
            self._jobs = {k: j for k, j in self._jobs.items() if j.alive}      # forget finished jobs
            self._jobs[job.job_id] = job
            job._launch()
        return job

    def resume(self, job: TrainingJob) -> None:
        """Continue a stopped (or abandoned) job from where it was, within the cap."""
        with self._lock:
            if job.alive:
                return
            if job.step >= job.preset.steps:
                raise LabError("This training has finished all its steps.")
            self._check_cap()
            self._jobs[job.job_id] = job
            job._launch()


MANAGER = JobManager(max_running=int(os.environ.get("LAB_MAX_TRAININGS", "1")))


# ----------------------------------------------------------------------------- trained models as lab models
def save_trained(job: TrainingJob, kind: str, folder: str | Path | None = None) -> Path:
    """Write one of the job's models as a checkpoint folder (config.json, model.safetensors,
    tokenizer.json) in the built-in format. Returns the folder (a new temporary one by default)."""
    if kind not in job.models:
        raise LabError(f"This training has no {kind} model.")
    if job.alive:
        raise LabError("Stop the training (or let it finish) before saving a model.")
    folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix=f"lab-trained-{kind}-"))
    folder.mkdir(parents=True, exist_ok=True)
    snap = job.snapshot()
    module = job.models[kind].eval()
    name = f"trained-{kind}-{job.job_id}"
    cfg = {"lab_format": 1, "name": name, "type": TYPES[kind],
           "description": f"{LABELS[kind]} trained live in the lab ({snap.step} steps, preset {job.preset.name})",
           "model": job.configs[kind],
           "train": {"steps": snap.step, "preset": job.preset.name, "seconds": round(snap.seconds, 1),
                     "loss_curve": [[s, round(v, 4)] for s, v in zip(snap.curves[kind].steps, snap.curves[kind].train)][::10],
                     "final_heldout_loss": snap.curves[kind].heldout[-1] if snap.curves[kind].heldout else None}}
    save_model(module, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    job.tok.save(str(folder / "tokenizer.json"))
    return folder


def open_trained(folder: str | Path, device: str | torch.device | None = "cpu"):
    """A saved live-trained model as a LabModel (like the built-in ones), through the built-in loader."""
    from . import load as load_model

    return load_model(str(folder), device)


def trained_lab(job: TrainingJob, kind: str, device: str | torch.device | None = "cpu"):
    """Save the job's model to a temporary folder and open it: an object usable like a built-in model."""
    return open_trained(save_trained(job, kind), device)


# ----------------------------------------------------------------------------- benchmark
def training_throughput(preset: str = "quick", steps: int = 10, kinds: tuple[str, ...] = KINDS,
                        threads: int | None = None) -> list[tuple[str, str, str]]:
    """Training tokens per second of each model on a preset (after 3 warm-up steps), on the CPU.

    threads: torch's intra-op threads for the measurement (restored afterwards); None = as set.
    Returns (what, measured, target) rows for the benchmark."""
    if threads is not None:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return training_throughput(preset, steps, kinds, None)
        finally:
            torch.set_num_threads(before)
    p = PRESETS[preset]
    tok = tokenizer()
    train_docs, _ = corpus()
    rows = []
    for k in kinds:
        torch.manual_seed(0)
        m, _ = build_model(k, p, tok.vocab_size, tok.pad_id)
        m.train()
        opt = torch.optim.AdamW(m.parameters(), lr=p.lr[k])
        rng = random.Random(0)
        for _ in range(3):                                              # warm-up
            train_step(m, opt, windows(train_docs, p.seq_len, p.batch, rng), tok.pad_id)
        t0 = time.perf_counter()
        for _ in range(steps):
            train_step(m, opt, windows(train_docs, p.seq_len, p.batch, rng), tok.pad_id)
        rate = steps * p.batch * p.seq_len / (time.perf_counter() - t0)
        # the models take turns: all of them finish the preset in 60 s if each runs at least this fast
        target = p.steps * p.batch * p.seq_len * len(kinds) / 60.0
        rows.append((f"training {LABELS[k]} (preset {preset}, batch {p.batch} x {p.seq_len} words, CPU, "
                     f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''})",
                     f"{rate:,.0f} tokens/s",
                     f">= {target:,.0f} tokens/s (the preset's {p.steps} steps of all {len(kinds)} models "
                     f"in 60 s)"))
    return rows
