"""Train small models live, in worker processes, while a page watches.

One job trains a Transformer, an LSTM and a vanilla RNN side by side on the built-in English
corpus, each on the same batches, one optimiser step each in turn. The page never trains: it
starts a job, reads `job.snapshot()` from a poller, and refreshes `job.heartbeat()`.

    from model.training.jobs import MANAGER, JobLimitError
    job = MANAGER.start(owner="session-id", preset="quick")     # queued; JobLimitError if the owner has one
    snap = job.snapshot()                                       # plain copy: curves, tokens/s, samples, place
    job.heartbeat()                                             # the page calls this on every poll
    job.stop(); MANAGER.resume(job)
    lab = trained_lab(job, "lstm")                              # usable like a built-in LabModel

For a class: each job runs in its own worker process (started by 'forkserver', or 'spawn'; never a fork
of the threaded server), at most `MANAGER.max_running` at once (env LAB_TRAIN_WORKERS; default every
core but one), each under an address-space limit (LAB_TRAIN_WORKER_MB, default 2048) with
LAB_TRAIN_THREADS torch threads (default 1). Other jobs wait in a fair queue (one job per session,
first asked first served, at most LAB_TRAIN_QUEUE waiting), each with its place and an estimated
start from the pace measured on this server. The worker sends its progress as JSON over a pipe and
keeps its state (weights and optimiser as safetensors, the rest as JSON) in the job's temporary
folder when it stops: the server never unpickles anything a worker wrote. A worker that dies
(out of memory, kill -9) fails its job with a message and frees its place for the next.

A job stops by itself when its steps are done, when stopped (the flag is checked every step),
or when its heartbeat is older than `heartbeat_timeout` seconds (its page was closed).
"""
from __future__ import annotations

import atexit
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

from ..api import LabError
from ..nets.lstm import LSTMConfig, LSTMLM
from ..nets.rnn import RNNConfig, RNNLM
from ..nets.tokenizer import WordTokenizer
from ..nets.transformer import TransformerConfig, TransformerLM

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
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
    from ..teaching import corpora

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


# ----------------------------------------------------------------------------- settings
def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _env_int(names: tuple[str, ...], default: int) -> int:
    for n in names:
        v = os.environ.get(n, "").strip()
        if v:
            try:
                return max(0, int(v))
            except ValueError:
                raise LabError(f"{n}={v!r} is not a whole number.") from None
    return default


def pool_size() -> int:
    """Training worker processes at once: env LAB_TRAIN_WORKERS (old name LAB_MAX_TRAININGS); by default
    every core but one, so the app keeps a core for its pages."""
    return max(1, _env_int(("LAB_TRAIN_WORKERS", "LAB_MAX_TRAININGS"), max(1, _cores() - 1)))


def worker_memory_mb() -> int:
    """Address-space limit of one training worker in MiB (env LAB_TRAIN_WORKER_MB; 0: no limit). Default 2048:
    a "longer" training of the three models peaked at 823 MiB of address space (341 MiB resident)."""
    return _env_int(("LAB_TRAIN_WORKER_MB",), 2048)


def worker_threads() -> int:
    """torch's intra-op threads in one worker (env LAB_TRAIN_THREADS, default 1: one core per training)."""
    return max(1, _env_int(("LAB_TRAIN_THREADS",), 1))


def start_method() -> str:
    """'forkserver' where the platform has it (a clean single-threaded parent forks each worker, with torch
    and the models imported once), else 'spawn'. Never 'fork': the server is threaded. Env LAB_TRAIN_START."""
    import multiprocessing as mp

    want = os.environ.get("LAB_TRAIN_START", "").strip()
    methods = mp.get_all_start_methods()
    if want:
        if want not in ("spawn", "forkserver") or want not in methods:
            raise LabError(f"LAB_TRAIN_START={want!r}: choose spawn or forkserver ({', '.join(methods)} here).")
        return want
    return "forkserver" if "forkserver" in methods else "spawn"


# ----------------------------------------------------------------------------- state on disk (no pickle)
STATE_FILE, STATE_META = "state.safetensors", "state.json"


def _state_tensors(models: dict[str, nn.Module], opts: dict[str, torch.optim.Optimizer]) -> tuple[dict, dict]:
    """Weights and optimiser moments as named tensors; the rest of the optimiser state as JSON."""
    tensors, groups = {}, {}
    for k, m in models.items():
        for name, t in m.state_dict().items():
            tensors[f"model.{k}.{name}"] = t.detach().cpu().clone()       # tied weights: one copy each
        sd = opts[k].state_dict()
        for i, st in sd["state"].items():
            for name, t in st.items():
                tensors[f"opt.{k}.{i}.{name}"] = torch.as_tensor(t).detach().cpu().clone()
        groups[k] = [{kk: (list(v) if isinstance(v, tuple) else v) for kk, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def _split(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {n[len(prefix):]: t for n, t in tensors.items() if n.startswith(prefix)}


def _atomic_write(path: Path, write) -> None:
    """write(tmp_path) then rename onto path: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _load_weights(folder: Path, configs: dict[str, dict]) -> dict[str, nn.Module]:
    """The job's models from its state file: tensors read by safetensors (never unpickled), strictly matched."""
    from safetensors.torch import load_file

    tensors = load_file(str(folder / STATE_FILE))
    out = {}
    for k, cfg in configs.items():
        m = _from_config(k, cfg)
        m.load_state_dict(_split(tensors, f"model.{k}."), strict=True)
        out[k] = m.eval()
    return out


def _from_config(kind: str, cfg: dict) -> nn.Module:
    if kind == "transformer":
        return TransformerLM(TransformerConfig.from_dict(cfg))
    if kind == "lstm":
        return LSTMLM(LSTMConfig.from_dict(cfg))
    return RNNLM(RNNConfig.from_dict(cfg))


# ----------------------------------------------------------------------------- the worker process
def _limit_memory(mb: int) -> None:
    if mb <= 0:
        return
    import resource

    limit = mb * 1024 * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _worker_main(conn, spec_json: str) -> None:
    """Entry of a training worker process. Talks to the server only in JSON bytes over `conn`; keeps its
    state (weights, optimiser, data order) in spec['folder'] when it ends, for resume and saving."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)             # Ctrl-C in the server's terminal: the server stops us
    spec = json.loads(spec_json)

    def send(**msg) -> None:
        conn.send_bytes(json.dumps(msg).encode())

    folder = Path(spec["folder"])
    final, message, ready, step = "done", "", False, 0
    try:
        _limit_memory(int(spec["memory_mb"]))
        torch.set_num_threads(int(spec["threads"]))
        p, kinds, seed = PRESETS[spec["preset"]], tuple(spec["kinds"]), int(spec["seed"])
        tok = tokenizer()
        torch.manual_seed(seed)
        models, opts = {}, {}
        for k in kinds:
            m, _ = build_model(k, p, tok.vocab_size, tok.pad_id)
            models[k] = m.train()
            opts[k] = torch.optim.AdamW(m.parameters(), lr=p.lr[k], betas=(0.9, 0.98), weight_decay=0.0)
        rng = random.Random(seed)
        step = 0
        if (folder / STATE_META).exists():                   # resume
            from safetensors.torch import load_file

            meta = json.loads((folder / STATE_META).read_text())
            tensors = load_file(str(folder / STATE_FILE))
            step = int(meta["step"])
            v, internal, gauss = meta["rng"]
            rng.setstate((v, tuple(internal), gauss))
            for k in kinds:
                models[k].load_state_dict(_split(tensors, f"model.{k}."), strict=True)
                ostate: dict = {}
                for name, t in _split(tensors, f"opt.{k}.").items():
                    i, field_ = name.split(".", 1)
                    ostate.setdefault(int(i), {})[field_] = t
                opts[k].load_state_dict({"state": ostate, "param_groups": meta["groups"][k]})
        ready = True
        train_docs, held_docs = corpus()
        send(t="started", step=step)

        def evaluate() -> None:
            send(t="heldout", step=step, values={k: heldout_loss(m, held_docs, tok.pad_id) for k, m in models.items()})

        def sample() -> None:
            send(t="sample", step=step, texts={k: sample_text(m, tok, seed=seed * 1000 + step + i)
                                               for i, (k, m) in enumerate(models.items())})

        if step == 0:
            evaluate()
        while step < p.steps:
            if conn.poll():
                msg = json.loads(conn.recv_bytes())
                if msg.get("op") == "stop":
                    final = msg.get("status", "stopped")
                    break
            t_step = time.perf_counter()
            batch = windows(train_docs, p.seq_len, p.batch, rng)
            lr_scale = min(1.0, (step + 1) / p.warmup)
            losses, compute = {}, {}
            for k in kinds:
                for g in opts[k].param_groups:
                    g["lr"] = p.lr[k] * lr_scale
                t0 = time.perf_counter()
                losses[k] = train_step(models[k], opts[k], batch, tok.pad_id)
                compute[k] = time.perf_counter() - t0
            step += 1
            send(t="step", step=step, losses=losses, compute=compute, tokens=p.batch * p.seq_len,
                 seconds=time.perf_counter() - t_step)
            if step % p.eval_every == 0 or step == p.steps:
                evaluate()
            if step % p.sample_every == 0 or step == p.steps:
                sample()
    except (BrokenPipeError, EOFError, ConnectionResetError):
        import shutil                                        # the server is gone (killed): nobody will resume

        shutil.rmtree(folder, ignore_errors=True)
        return
    except MemoryError:
        final, message = "failed", (f"The training ran out of the memory a training may use "
                                    f"({spec['memory_mb']:,} MiB, LAB_TRAIN_WORKER_MB).")
    except Exception as e:                                   # shown on the page, never a silent death
        final, message = "failed", f"{type(e).__name__}: {e}"
        if any(w in str(e).lower() for w in ("allocate", "memory", "map segment")):
            message += (f" (probably out of the memory a training may use: {spec['memory_mb']:,} MiB, "
                        f"LAB_TRAIN_WORKER_MB)")
    try:
        if ready:
            from safetensors.torch import save_file

            tensors, groups = _state_tensors(models, opts)
            g, internal, gauss = rng.getstate()
            _atomic_write(folder / STATE_FILE, lambda t: save_file(tensors, str(t)))
            _atomic_write(folder / STATE_META, lambda t: t.write_text(json.dumps(
                {"step": step, "rng": [g, list(internal), gauss], "groups": groups})))
        send(t="exit", status=final, message=message, step=step)
    except (BrokenPipeError, EOFError, ConnectionResetError):
        return
    except Exception as e:                                   # e.g. the temp disk is full
        try:
            send(t="exit", status="failed", step=step,
                 message=f"Could not keep the trained state: {type(e).__name__}: {e}")
        except OSError:
            pass


# ----------------------------------------------------------------------------- the job, as the server sees it
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
    status: str          # "queued", "starting", "running", "stopping", "stopped", "done", "abandoned", "failed"
    step: int
    steps: int
    preset: str
    kinds: tuple[str, ...]
    curves: dict[str, Curve]
    tokens_per_s: dict[str, float]       # per model, over its own compute time
    samples: dict[str, list[tuple[int, str]]]
    seconds: float                       # wall time spent training so far
    message: str = ""
    place: int | None = None             # 1 = next to start; None unless queued
    starts_in: float | None = None       # estimated seconds until it starts (queued; None = no measurement yet)
    remaining: float | None = None       # estimated seconds of training left (None = no measurement yet)

    @property
    def progress(self) -> float:
        return self.step / self.steps if self.steps else 0.0

    @property
    def running(self) -> bool:
        return self.status in ("queued", "starting", "running", "stopping")

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


ACTIVE = ("queued", "starting", "running", "stopping")


class TrainingJob:
    """One training: queued, then run by a worker process; its progress arrives as JSON messages, its
    weights as a safetensors file in its own temporary folder. All state changes are under self._lock."""

    def __init__(self, owner: str, preset: str = "quick", kinds: tuple[str, ...] = KINDS, seed: int = 0,
                 heartbeat_timeout: float = 60.0, root: Path | None = None) -> None:
        if preset not in PRESETS:
            raise LabError(f"Unknown preset {preset!r}; choose from {', '.join(PRESETS)}.")
        bad = [k for k in kinds if k not in KINDS]
        if bad or not kinds:
            raise LabError(f"Unknown model kind(s) {bad}; choose from {', '.join(KINDS)}.")
        self.job_id, self.owner = uuid.uuid4().hex[:8], owner
        self.preset, self.kinds, self.seed = PRESETS[preset], tuple(kinds), seed
        self.heartbeat_timeout = heartbeat_timeout
        self.tok = tokenizer()
        self.configs = {k: build_model(k, self.preset, self.tok.vocab_size, self.tok.pad_id)[1] for k in self.kinds}
        self.folder = Path(tempfile.mkdtemp(prefix=f"job-{self.job_id}-", dir=root))
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._done.set()
        self._beat = time.monotonic()
        self._proc = None
        self._conn = None
        self._reader: threading.Thread | None = None
        self._models: tuple[int, dict[str, nn.Module]] | None = None
        self.status, self.step, self.message, self.seconds = "ready", 0, "", 0.0
        self.saved_step: int | None = None                  # the step of the state file, if any
        self.curves = {k: Curve() for k in self.kinds}
        self._compute = {k: 0.0 for k in self.kinds}
        self._tokens = 0
        self.samples: dict[str, list[tuple[int, str]]] = {k: [] for k in self.kinds}
        self.place: int | None = None
        self.starts_in: float | None = None
        self.pid: int | None = None                          # the worker's process id while it runs
        self._launched: float | None = None                  # monotonic time of the worker's start
        self._first_step: tuple[float, int, int] | None = None   # (time, step, tokens) at its first step

    # -- called by pages
    def heartbeat(self) -> None:
        with self._lock:
            self._beat = time.monotonic()

    def stop(self, status: str = "stopped", message: str = "") -> None:
        """Ask the worker to stop after its current step (a queued job leaves the queue)."""
        with self._lock:
            if self.status == "queued":                      # the manager drops it from its queue
                self.status, self.message, self.place, self.starts_in = status, message, None, None
                self._done.set()
                return
            if self.status not in ("starting", "running"):
                return
            self.status = "stopping"
            if message:
                self.message = message
            conn = self._conn
        try:
            conn.send_bytes(json.dumps({"op": "stop", "status": status}).encode())
        except (OSError, AttributeError):
            pass                                             # the worker is gone; its reader reports it

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the job is neither queued nor running; True if it is not."""
        return self._done.wait(timeout)

    @property
    def alive(self) -> bool:
        return not self._done.is_set()

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            remaining = None
            if self.step and self.seconds:
                remaining = (self.preset.steps - self.step) * self.seconds / self.step
            else:
                whole = estimate_seconds(self.preset.name, self.kinds)
                remaining = whole * (1 - self.step / self.preset.steps) if whole is not None else None
            return JobSnapshot(self.job_id, self.status, self.step, self.preset.steps, self.preset.name, self.kinds,
                               {k: copy.deepcopy(c) for k, c in self.curves.items()},
                               {k: (self._tokens / t if t > 0 else 0.0) for k, t in self._compute.items()},
                               {k: list(v) for k, v in self.samples.items()}, self.seconds, self.message,
                               self.place, self.starts_in, remaining)

    @property
    def models(self) -> dict[str, nn.Module]:
        """Kind -> the job's model as its worker last saved it (weights read from safetensors)."""
        with self._lock:
            saved = self.saved_step
        if saved is None:
            raise LabError("This training has no trained weights yet: let it run, then stop it or let it finish.")
        if self._models is None or self._models[0] != saved:
            self._models = (saved, _load_weights(self.folder, self.configs))
        return self._models[1]

    def trained_modules(self) -> dict[str, nn.Module]:
        """Label -> the job's model (in eval mode), for measurements; only once the job is not running."""
        if self.alive:
            raise LabError("The training is still running: stop it (or let it finish) first.")
        return {f"{LABELS[k]} (trained live)": m.eval() for k, m in self.models.items()}

    def expected_seconds(self) -> float | None:
        """Estimated seconds of training left, from this job's own pace or this server's last measurement."""
        return self.snapshot().remaining

    def cleanup(self) -> None:
        """Remove the job's temporary folder (its weights are gone afterwards)."""
        if not self.alive:
            import shutil

            shutil.rmtree(self.folder, ignore_errors=True)

    def _stale(self) -> bool:
        with self._lock:
            return time.monotonic() - self._beat > self.heartbeat_timeout

    def _abandon_message(self) -> str:
        return (f"Stopped: its page sent no heartbeat for {self.heartbeat_timeout:.0f} s "
                f"(the page was closed or left).")

    # -- the server side of the worker
    def _launch(self, ctx, on_exit, on_tick=None) -> None:
        spec = {"folder": str(self.folder), "preset": self.preset.name, "kinds": list(self.kinds), "seed": self.seed,
                "memory_mb": worker_memory_mb(), "threads": worker_threads()}
        parent, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_worker_main, args=(child, json.dumps(spec)), name=f"lab-train-{self.job_id}",
                           daemon=True)
        with self._lock:
            self.status, self.place, self.starts_in = "starting", None, None
            self._conn, self._proc = parent, proc
            self._launched, self._first_step = time.monotonic(), None
        proc.start()
        child.close()                                        # so the reader sees EOF when the worker dies
        self.pid = proc.pid
        self._reader = threading.Thread(target=self._read, args=(on_exit, on_tick),
                                        name=f"lab-train-read-{self.job_id}", daemon=True)
        self._reader.start()

    def _read(self, on_exit, on_tick=None) -> None:
        conn, proc = self._conn, self._proc
        ended, ticked = None, time.monotonic()
        try:
            while True:
                if on_tick is not None and time.monotonic() - ticked > 0.5:
                    on_tick()                                # the queue's places and estimates, twice a second
                    ticked = time.monotonic()
                if self._stale() and self.status in ("starting", "running"):
                    self.stop("abandoned", self._abandon_message())
                if not conn.poll(0.25):
                    if not proc.is_alive() and not conn.poll(0):
                        break
                    continue
                msg = json.loads(conn.recv_bytes())
                if msg["t"] == "exit":
                    ended = msg
                    break
                self._apply(msg)
        except (EOFError, OSError, ValueError):
            pass
        proc.join(30)
        if proc.is_alive():                                  # said goodbye but does not exit: end it
            proc.kill()
            proc.join(5)
        code = proc.exitcode
        with self._lock:
            if ended is not None:
                self.status = ended["status"]
                if ended["status"] == "abandoned":
                    self.message = self._abandon_message()
                elif ended["message"]:
                    self.message = ended["message"]
                if ended["status"] != "failed" or (self.folder / STATE_META).exists():
                    self.saved_step = int(ended["step"])
            else:
                how = (f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}")
                hint = (" It may have run out of memory (the server's limit per training is "
                        f"{worker_memory_mb():,} MiB) or been stopped by an administrator." if code == -9 else "")
                self.status = "failed"
                self.message = (f"The training worker stopped unexpectedly ({how}) at step {self.step} of "
                                f"{self.preset.steps}.{hint} Its progress since the last stop is lost: start a new "
                                f"training.")
            self._conn = self._proc = None
            self.pid = None
        try:
            conn.close()
        except OSError:
            pass
        self._done.set()
        on_exit(self)

    def _apply(self, msg: dict) -> None:
        with self._lock:
            t = msg["t"]
            if t == "started":
                if self.status == "starting":
                    self.status = "running"
            elif t == "step":
                self.step = int(msg["step"])
                self._tokens += int(msg["tokens"])
                self.seconds += float(msg["seconds"])
                for k, v in msg["losses"].items():
                    self.curves[k].steps.append(self.step)
                    self.curves[k].train.append(float(v))
                    self._compute[k] += float(msg["compute"][k])
                now = time.monotonic()
                if self._first_step is None:
                    self._first_step = (now, self.step, self._tokens)
                    if self._launched is not None:
                        _PACE["start"] = now - self._launched    # a worker's start, to its first step
                total = sum(self._compute.values())
                t0, s0, n0 = self._first_step
                if self.step - s0 >= 3 and total > 0:        # wall clock (evaluations and samples included)
                    per_token = (now - t0) / (self._tokens - n0)     # per token since the first step, shared
                    for k in self.kinds:                     # out among the models by their compute time
                        _PACE[_pace_key(self.preset, k)] = per_token * self._compute[k] / total
            elif t == "heldout":
                for k, v in msg["values"].items():
                    self.curves[k].heldout_steps.append(int(msg["step"]))
                    self.curves[k].heldout.append(float(v))
            elif t == "sample":
                for k, v in msg["texts"].items():
                    self.samples[k].append((int(msg["step"]), str(v)))


# wall seconds per training token of each model (kind and size) in the last job that trained it on this
# server, and under "start" the seconds from a worker's start to its first step
_PACE: dict = {}


def _pace_key(preset: Preset, kind: str) -> tuple[str, str]:
    return kind, json.dumps(preset.models[kind], sort_keys=True)


def estimate_seconds(preset: str, kinds: tuple[str, ...] = KINDS) -> float | None:
    """Seconds a whole training of `preset` would take at the pace last measured on this server for its
    models (None before any training of these models ran here)."""
    p = PRESETS[preset]
    paces = [_PACE.get(_pace_key(p, k)) for k in kinds]
    if not kinds or None in paces:
        return None
    return _PACE.get("start", 0.0) + p.steps * p.batch * p.seq_len * sum(paces)


def measured_tokens_per_s(preset: str, kinds: tuple[str, ...] = KINDS) -> float | None:
    """Training tokens per second of the models of `preset` taking turns, as last measured on this server."""
    whole = estimate_seconds(preset, kinds)
    p = PRESETS[preset]
    return p.steps * p.batch * p.seq_len / (whole - _PACE.get("start", 0.0)) if whole else None


def _no_main_in_workers() -> None:
    """Keep the server's __main__ out of the workers. Under `streamlit run`, __main__ is the page script
    being run, and multiprocessing re-runs __main__ in every spawned child (and in the fork server):
    a worker would execute a page. Our workers need only model.training.jobs, so the preparation data sent to
    them (process names "lab-train-..." and the fork server's own, "ignore") leaves __main__ out."""
    from multiprocessing import spawn

    if getattr(spawn.get_preparation_data, "_lab", False):
        return
    original = spawn.get_preparation_data

    def get_preparation_data(name):
        d = original(name)
        if name == "ignore" or str(name).startswith("lab-train-"):
            d.pop("init_main_from_path", None)
            d.pop("init_main_from_name", None)
            d.pop("main_path", None)
        return d
    get_preparation_data._lab = True
    spawn.get_preparation_data = get_preparation_data


class JobManager:
    """A pool of at most `max_running` worker processes and a fair queue: one job per session at a time, in
    the order asked. With max_queued=0 there is no queue: a start over the cap is refused."""

    def __init__(self, max_running: int | None = None, max_queued: int = 0, root: str | Path | None = None) -> None:
        self.max_running = pool_size() if max_running is None else max(1, max_running)
        self.max_queued = max_queued
        self._lock = threading.RLock()
        self._jobs: dict[str, TrainingJob] = {}
        self._queue: list[TrainingJob] = []
        self._ctx = None
        self.root = Path(root) if root else None

    # -- the pool
    def _context(self):
        if self._ctx is None:
            import multiprocessing as mp

            _no_main_in_workers()
            method = start_method()
            self._ctx = mp.get_context(method)
            if method == "forkserver":
                self._ctx.set_forkserver_preload(["model.training.jobs", "model.training.warm"])
        return self._ctx

    def _root(self) -> Path:
        if self.root is None:
            import shutil

            self.root = Path(tempfile.mkdtemp(prefix=f"lab-train-{os.getpid()}-"))
            atexit.register(shutil.rmtree, self.root, True)     # also for managers nobody shuts down
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root

    def running(self) -> int:
        with self._lock:
            return sum(j.status in ("starting", "running", "stopping") for j in self._jobs.values())

    def queued(self) -> list[TrainingJob]:
        with self._lock:
            return list(self._queue)

    def busy(self) -> dict:
        """What a page shows about the server: pool size, running and waiting trainings, CPU load."""
        with self._lock:
            self._housekeep()
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            return {"workers": self.max_running, "running": self.running(), "queued": len(self._queue),
                    "cores": _cores(), "load": load,
                    "busy": bool(self._queue) or (load is not None and load > _cores())}

    def _dispatch(self) -> None:
        """Start queued jobs while a worker is free (under self._lock)."""
        self._housekeep()
        free = self.max_running - self.running()
        starting, self._queue = self._queue[:max(0, free)], self._queue[max(0, free):]
        self._estimate()                                     # the places move up before anyone starts
        for job in starting:
            job._launch(self._context(), self._on_exit, self._on_tick)

    def _housekeep(self) -> None:
        self._queue = [j for j in self._queue if j.status == "queued"]      # left the queue (stop) meanwhile
        for j in list(self._queue):
            if j._stale():
                self._queue.remove(j)
                j.stop("abandoned", j._abandon_message())

    def _estimate(self) -> None:
        """Each queued job's place and estimated start: workers free up as the running jobs finish."""
        free = sorted((j.expected_seconds() for j in self._jobs.values()
                       if j.status in ("starting", "running", "stopping")), key=lambda v: (v is None, v or 0))
        slots: list[float | None] = [0.0] * (self.max_running - len(free)) + free
        for i, j in enumerate(self._queue):
            slots.sort(key=lambda v: (v is None, v or 0))
            start = slots.pop(0)
            dur = estimate_seconds(j.preset.name, j.kinds)
            with j._lock:
                j.place, j.starts_in = i + 1, start
            slots.append(None if start is None or dur is None else start + dur)

    def _on_tick(self) -> None:
        with self._lock:
            self._housekeep()
            self._estimate()

    def _on_exit(self, job: TrainingJob) -> None:
        with self._lock:
            self._dispatch()

    def _admit(self, job: TrainingJob) -> None:
        """Queue a job (its owner has no other job queued or running) and start what can start."""
        mine = [j for j in self._jobs.values() if j.owner == job.owner and j.alive and j is not job]
        if mine:
            raise JobLimitError("You already have a training queued or running: stop it before starting another "
                                "(one training per student at a time, so that everyone gets a turn).")
        if self.running() >= self.max_running and len(self._queue) >= self.max_queued:
            n = self.running()
            if self.max_queued:
                raise JobLimitError(f"{len(self._queue)} trainings are already waiting on this server (the limit is "
                                    f"{self.max_queued}). Try again in a few minutes.")
            raise JobLimitError(f"{n} training{'s are' if n != 1 else ' is'} already running on this server "
                                f"(the limit is {self.max_running}, so the app stays responsive). Wait until it "
                                f"finishes or is stopped, then try again.")
        with job._lock:
            job.status, job.message, job._beat = "queued", "", time.monotonic()
            job._done.clear()
        self._jobs[job.job_id] = job
        self._queue.append(job)
        self._dispatch()

    def start(self, owner: str, preset: str = "quick", kinds: tuple[str, ...] = KINDS, seed: int = 0,
              heartbeat_timeout: float = 60.0) -> TrainingJob:
        """A new job for `owner`: started now if a worker is free, else queued (JobLimitError when its owner
        already has one, or the queue is full)."""
        with self._lock:
            job = TrainingJob(owner, preset, kinds, seed, heartbeat_timeout, root=self._root())
            try:
                self._admit(job)
            except LabError:
                job.cleanup()
                raise
            for k, j in list(self._jobs.items()):           # forget this owner's finished jobs (and their files)
                if j.owner == owner and j is not job and not j.alive:
                    del self._jobs[k]
                    j.cleanup()
        return job

    def resume(self, job: TrainingJob) -> None:
        """Continue a stopped (or abandoned) job from its saved state, queued like a new one."""
        with self._lock:
            if job.alive:
                return
            if job.step >= job.preset.steps:
                raise LabError("This training has finished all its steps.")
            if job.step and job.saved_step != job.step:     # (step 0: it left the queue before starting)
                raise LabError("This training cannot be resumed (its worker stopped without saving): start a new one.")
            self._admit(job)

    def shutdown(self, grace: float = 1.0) -> None:
        """End every worker and remove every temporary folder (the server is exiting: nobody will read the
        workers' state, so they get `grace` seconds, not a clean stop)."""
        import shutil

        with self._lock:
            jobs = list(self._jobs.values())
            for j in self._queue:
                j.stop()
            self._queue.clear()
        for j in jobs:
            j.stop()
        deadline = time.monotonic() + grace
        for j in jobs:
            p = j._proc
            if p is not None:
                p.join(max(0.0, deadline - time.monotonic()))
                if p.is_alive():
                    p.kill()
        for j in jobs:
            j.join(5)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def _clean_orphans() -> None:
    """Remove the temporary folders of servers that are gone (a server killed with -9 cannot clean up)."""
    import shutil

    tmp = Path(tempfile.gettempdir())
    for d in tmp.glob("lab-train-*-*"):
        try:
            pid = int(d.name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass


MANAGER = JobManager(max_queued=_env_int(("LAB_TRAIN_QUEUE",), 60))
if __import__("multiprocessing").parent_process() is None:      # the server, not a worker or the fork server
    _clean_orphans()
    atexit.register(MANAGER.shutdown)


# ----------------------------------------------------------------------------- trained models as lab models
_SAVED_ROOT: Path | None = None


def _saved_root() -> Path:
    global _SAVED_ROOT
    if _SAVED_ROOT is None:
        _SAVED_ROOT = Path(tempfile.mkdtemp(prefix=f"lab-train-{os.getpid()}-saved-"))
        atexit.register(lambda: __import__("shutil").rmtree(_SAVED_ROOT, ignore_errors=True))
    return _SAVED_ROOT


def _save_error(e: OSError, folder: Path) -> LabError:
    import errno

    if e.errno == errno.ENOSPC:
        why = "the disk is full"
    elif e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        why = "that place is read-only for the server" if e.errno == errno.EROFS else "the server may not write there"
    elif e.errno in (errno.EEXIST, errno.ENOTEMPTY):
        why = "a folder of that name already exists and is not empty"
    else:
        why = e.strerror or str(e)
    return LabError(f"Could not save the model in {folder}: {why}. Nothing was written there.")


def save_trained(job: TrainingJob, kind: str, folder: str | Path | None = None) -> Path:
    """Write one of the job's models as a checkpoint folder (config.json, model.safetensors,
    tokenizer.json) in the built-in format. Returns the folder (a new temporary one by default).

    Written in full to a temporary sibling folder, then renamed onto `folder`: a full or read-only disk
    raises LabError and leaves nothing behind."""
    import shutil

    if kind not in job.kinds:
        raise LabError(f"This training has no {kind} model.")
    if job.alive:
        raise LabError("Stop the training (or let it finish) before saving a model.")
    module = job.models[kind].eval()
    folder = Path(folder) if folder else _saved_root() / f"trained-{kind}-{job.job_id}-{uuid.uuid4().hex[:4]}"
    snap = job.snapshot()
    name = f"trained-{kind}-{job.job_id}"
    cfg = {"lab_format": 1, "name": name, "type": TYPES[kind],
           "description": f"{LABELS[kind]} trained live in the lab ({snap.step} steps, preset {job.preset.name})",
           "model": job.configs[kind],
           "train": {"steps": snap.step, "preset": job.preset.name, "seconds": round(snap.seconds, 1),
                     "loss_curve": [[s, round(v, 4)] for s, v in zip(snap.curves[kind].steps, snap.curves[kind].train)][::10],
                     "final_heldout_loss": snap.curves[kind].heldout[-1] if snap.curves[kind].heldout else None}}
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:6]}.partial")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        _write_checkpoint(tmp, module, cfg, job.tok)
        os.rename(tmp, folder)                               # atomic; onto an empty folder too
    except OSError as e:
        raise _save_error(e, folder) from None
    except Exception as e:                                   # safetensors reports a full disk as its own error
        import errno

        if any(w in str(e) for w in ("No space", "os error 28", "code: 28", "StorageFull")):
            raise _save_error(OSError(errno.ENOSPC, "No space left on device"), folder) from None
        raise LabError(f"Could not save the model in {folder}: {type(e).__name__}: {e}. Nothing was written there."
                       ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _write_checkpoint(folder: Path, module: nn.Module, cfg: dict, tok: WordTokenizer) -> None:
    save_model(module, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    tok.save(str(folder / "tokenizer.json"))


def open_trained(folder: str | Path, device: str | torch.device | None = "cpu"):
    """A saved live-trained model as a LabModel (like the built-in ones), through the built-in loader."""
    from .. import load as load_model

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


def queue_rows(runs: int = 3, log=print) -> list[tuple[str, str, str]]:
    """(what, measured, target) rows for the benchmark: a worker's start to its first step with each start
    method, and the whole-training estimate against the time taken (quick preset, RNN and LSTM)."""
    import statistics

    rows = []
    before = os.environ.get("LAB_TRAIN_START")
    try:
        for method in ("forkserver", "spawn"):
            os.environ["LAB_TRAIN_START"] = method
            mgr, got = JobManager(max_running=1), []
            for i in range(runs):
                t = time.monotonic()
                job = mgr.start(f"bench-{i}", preset="quick", kinds=("rnn",), heartbeat_timeout=600)
                while job.snapshot().step < 1 and job.alive and time.monotonic() - t < 300:
                    time.sleep(0.01)
                got.append(time.monotonic() - t)
                job.stop()
                job.join(60)
            mgr.shutdown()
            log(f"  {method}: {', '.join(f'{v:.2f}' for v in got)} s")
            rows.append((f"training worker ({method}): start to first step, {runs} runs",
                         f"median {statistics.median(got):.2f} s ({min(got):.2f}-{max(got):.2f}); load "
                         f"{os.getloadavg()[0]:.1f} on {_cores()} cores", ""))
        os.environ["LAB_TRAIN_START"] = "forkserver"
        mgr = JobManager(max_running=1)
        pairs = []
        for i in range(runs):
            est = estimate_seconds("quick", ("rnn", "lstm"))
            t = time.monotonic()
            job = mgr.start(f"bench-e{i}", preset="quick", kinds=("rnn", "lstm"), heartbeat_timeout=600)
            job.join(900)
            if est is not None:
                pairs.append((est, time.monotonic() - t))
        mgr.shutdown()
        rows.append(("training estimate shown before the start vs time taken (quick, RNN + LSTM, start included)",
                     "; ".join(f"{e:.1f} s vs {a:.1f} s" for e, a in pairs),
                     "the page says 'about': within a factor of 1.5"))
    finally:
        if before is None:
            os.environ.pop("LAB_TRAIN_START", None)
        else:
            os.environ["LAB_TRAIN_START"] = before
    return rows
