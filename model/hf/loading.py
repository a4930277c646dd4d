"""Finding and loading a Hugging Face checkpoint, with every failure turned into one ModelLoadError message.

Order: a local folder, else the local Hugging Face cache, else the hub, only when HF_HUB_OFFLINE is off and
the hub (HF_ENDPOINT's host and port) answers within a few seconds. Never `trust_remote_code`; safetensors
are required where the folder has them (`use_safetensors=True`).
"""
from __future__ import annotations

import io
import json
import os
import re
import socket
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import torch

from ..errors import ModelLoadError
from .architectures import CAUSAL_LM, ENCODER, ENCODER_DECODER, MASKED_LM, SUPPORTED, ArchSpec, spec_for

NET_TIMEOUT = 3.0


def hub_address() -> tuple[str, int]:
    """(host, port) of HF_ENDPOINT (default https://huggingface.co), the port defaulting by scheme."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = url.hostname or "huggingface.co"
    try:
        port = url.port
    except ValueError:
        port = None
    return host, port or (80 if url.scheme == "http" else 443)


def hub_reachable() -> bool:
    try:
        socket.create_connection(hub_address(), timeout=NET_TIMEOUT).close()
        return True
    except OSError:
        return False


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on")


def _chain(e: BaseException | None) -> list[str]:
    names, seen = [], set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        names.append(type(e).__name__)
        e = e.__cause__ or e.__context__
    return names


def _available_bytes(device: torch.device) -> int | None:
    """Free memory on the device, or None where it cannot be told."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        if device.type == "cpu":
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except Exception:
        return None
    return None


def _folder_advice() -> str:
    """The end of a message about a model that cannot be fetched: a folder is an answer only where folders open."""
    from ..serving.store import LinkPolicy

    if LinkPolicy.from_env().allow_folders:
        return "; or give the folder of a copy saved with save_pretrained."
    return ("; a copy saved with save_pretrained opens from a folder only where the server allows folders "
            "(LAB_ALLOW_FOLDERS=1).")


def fetch(name: str, load, what: str, local: bool):
    """Call load(local_files_only): the local folder or cache first, the hub only if allowed and reachable."""
    try:
        return load(True)
    except Exception as first:
        if local:
            raise
        if offline():
            raise ModelLoadError(f"“{name}” is not in the local Hugging Face cache, and offline mode is on "
                                 "(HF_HUB_OFFLINE=1), so the hub is not asked. The built-in models work offline. The "
                                 "person running the server can download it into the cache on a machine with network, "
                                 f"or turn offline mode off{_folder_advice()}") from first
        if not hub_reachable():
            host, port = hub_address()
            raise ModelLoadError(f"Cannot reach the Hugging Face hub ({host}:{port}; the server may have no network), "
                                 f"and “{name}” is not in the local Hugging Face cache. The built-in models work "
                                 "offline. The person running the server can download it into the cache on a machine "
                                 f"with network{_folder_advice()}") from first
    try:
        return load(False)
    except Exception as e:
        chain = _chain(e)
        if "GatedRepoError" in chain:
            raise ModelLoadError(f"“{name}” is gated on the hub: it needs a login this lab does not do.") from e
        if "RepositoryNotFoundError" in chain or "HFValidationError" in chain:
            raise ModelLoadError(f"There is no model called “{name}” on the Hugging Face hub (check the spelling, "
                                 "e.g. gpt2, bert-base-uncased, t5-small), and no such local folder.") from e
        if "EntryNotFoundError" in chain or "RemoteEntryNotFoundError" in chain:
            raise ModelLoadError(f"“{name}” exists but has no {what} in the layout transformers expects.") from e
        raise ModelLoadError(f"Could not fetch “{name}” from the hub: {type(e).__name__}: {e}") from e


# ----------------------------------------------------------------------------- download progress
@dataclass(frozen=True)
class DownloadProgress:
    """Where a hub download stands, from the hub's own progress bars (snapshot_download's tqdm_class)."""
    done: int            # bytes written so far
    total: int           # bytes of the files started so far (it grows as each file starts; 0 before the first)
    files_done: int
    files: int           # files to fetch (0 until the hub has listed them)

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


_SINK: ContextVar[Callable[[DownloadProgress], None] | None] = ContextVar("lab_download_progress", default=None)


@contextmanager
def download_progress(callback: Callable[[DownloadProgress], None]):
    """While inside, a model downloaded from the hub in this context reports its progress to callback (called from
    the hub's download threads; keep it short, and do not touch a user interface from it)."""
    token = _SINK.set(callback)
    try:
        yield
    finally:
        _SINK.reset(token)


def hub_tqdm(callback: Callable[[DownloadProgress], None]) -> type:
    """A tqdm class for snapshot_download that forwards its bars to callback instead of drawing them.

    snapshot_download makes three bars from it: the files ("Fetching N files", counted as each file completes),
    the bytes received ("Downloading bytes") and the bytes written ("Reconstructing ..."), into which every file's
    download reports its size when it starts and its bytes as they come. The last one is reported as bytes."""
    from tqdm.std import tqdm as std_tqdm

    lock = threading.Lock()
    state = {"done": 0, "total": 0, "files_done": 0, "files": 0}
    last: list = [None]

    def report() -> None:
        p = DownloadProgress(**state)
        if p != last[0]:
            last[0] = p
            callback(p)

    class HubProgress(std_tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            desc = str(kwargs.get("desc") or "")
            self._role = "files" if kwargs.get("unit", "it") != "B" else ("bytes" if desc.startswith("Reconstruct")
                                                                         else "received")
            kwargs.update(file=io.StringIO(), disable=False, mininterval=0, miniters=1)   # counted, never drawn
            super().__init__(*args, **kwargs)
            self._publish()

        def _publish(self) -> None:
            with lock:
                if self._role == "files":
                    state["files"], state["files_done"] = int(self.total or 0), int(self.n)
                elif self._role == "bytes":
                    state["total"], state["done"] = int(self.total or 0), int(self.n)
                else:
                    return
                report()

        def update(self, n=1):
            out = super().update(n)
            self._publish()
            return out

        def refresh(self, *args, **kwargs):         # snapshot_download grows a bar's total, then refreshes
            out = super().refresh(*args, **kwargs)
            self._publish()
            return out

    return HubProgress


HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.spm", "*.tiktoken"]   # config, weights, tokenizers


def download(name: str, local_files_only: bool = False) -> str:
    """Fetch the files transformers needs for hub model `name` into the Hugging Face cache (its top folder only;
    safetensors weights, not the other formats), reporting to the download_progress callback if one is set."""
    import huggingface_hub

    sink = _SINK.get()
    return huggingface_hub.snapshot_download(name, allow_patterns=HUB_FILES, ignore_patterns=["*/*"],
                                             local_files_only=local_files_only,
                                             tqdm_class=hub_tqdm(sink) if sink is not None else None)


def _unsupported(name: str, model_type: str) -> ModelLoadError:
    return ModelLoadError(f"“{name}” is a “{model_type}” model, a family this lab does not run. "
                          f"Supported families: {SUPPORTED}.")


def read_config(name: str):
    """-> (config, spec, source, local). Refuses what the lab cannot or will not run, with one message each."""
    import transformers as tf

    path = Path(name).expanduser()
    local = path.is_dir()
    if not local and (name.startswith(("/", ".", "~")) or os.sep + os.sep in name):
        raise ModelLoadError(f"There is no folder “{name}”.")
    if local and not (path / "config.json").is_file():
        raise ModelLoadError(f"The folder “{name}” has no config.json: give a folder saved with "
                             "save_pretrained (config.json, weights and tokenizer files).")
    if not local and not re.fullmatch(r"[\w.\-]+(/[\w.\-]+)?", name):
        raise ModelLoadError(f"“{name}” is not a built-in model, a local folder, or a valid Hugging Face id "
                             "(ids look like gpt2 or Helsinki-NLP/opus-mt-en-fr).")
    if local:
        try:
            raw = json.loads((path / "config.json").read_text())
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"The config.json in “{name}” cannot be read as JSON: {e}") from e
        if not isinstance(raw, dict) or not raw.get("model_type"):
            raise ModelLoadError(f"“{name}” is not a transformers model folder: its config.json lacks model_type. "
                                 f"Supported families: {SUPPORTED}.")
        if spec_for(raw["model_type"]) is None:
            raise _unsupported(name, raw["model_type"])
    src = str(path) if local else name
    try:
        config = fetch(name, lambda lfo: tf.AutoConfig.from_pretrained(src, local_files_only=lfo,
                                                                       trust_remote_code=False), "config.json", local)
    except ModelLoadError:
        raise
    except ValueError as e:
        msg = str(e)
        if "model_type" in msg and "Unrecognized model" in msg:
            raise ModelLoadError(f"“{name}” is not a transformers model: its config.json lacks model_type. "
                                 f"Supported families: {SUPPORTED}.") from e
        if "trust_remote_code" in msg:
            raise ModelLoadError(f"“{name}” needs its own custom code to run (trust_remote_code), which this lab "
                                 f"never executes. Supported families: {SUPPORTED}.") from e
        if "model type" in msg or "does not recognize" in msg:
            m = re.search(r"model type `?([\w\-]+)`?", msg)
            raise _unsupported(name, m.group(1) if m else "unknown") from e
        raise ModelLoadError(f"Cannot read the config of “{name}”: {e}") from e
    except Exception as e:
        raise ModelLoadError(f"Cannot read the config of “{name}”: {type(e).__name__}: {e}") from e
    spec = spec_for(config.model_type)
    if spec is None:
        raise _unsupported(name, config.model_type)
    return config, spec, src, local


def head_of(config, spec: ArchSpec) -> str:
    """The head the checkpoint declares: ENCODER when `architectures` names the head-less base model."""
    archs = list(getattr(config, "architectures", None) or [])
    if spec.head == MASKED_LM and archs and all(a in spec.base_classes for a in archs):
        return ENCODER
    return spec.head


def _auto(head: str):
    import transformers as tf

    return {CAUSAL_LM: tf.AutoModelForCausalLM, MASKED_LM: tf.AutoModelForMaskedLM,
            ENCODER_DECODER: tf.AutoModelForSeq2SeqLM, ENCODER: tf.AutoModel}[head]


def _too_big(name: str, n_params: int, device: torch.device, free: int) -> ModelLoadError:
    need = n_params * 4 * 1.3
    return ModelLoadError(f"“{name}” has {n_params / 1e6:,.0f} M parameters and needs about {need / 2**30:,.1f} GiB; "
                          f"{device.type.upper()} has {free / 2**30:.1f} GiB free. Pick a smaller model.")


def load_weights(name: str, src: str, local: bool, config, spec: ArchSpec, device: torch.device):
    """-> (hf module in eval mode on device, head, tokenizer, parameter count)."""
    import transformers as tf

    from ..serving.store import params_from_hf_config

    free = _available_bytes(device)
    declared = params_from_hf_config(config.to_dict())   # closed form: a config declaring trillions is refused
    if free is not None and declared * 4 * 1.3 > free:   # here, before even a meta-device skeleton is built
        raise _too_big(name, declared, device, free)
    head = head_of(config, spec)
    cls = _auto(head)
    try:
        with torch.device("meta"):
            skeleton = cls.from_config(config, trust_remote_code=False)
        n_params = sum(p.numel() for p in skeleton.parameters())
        del skeleton
    except ValueError as e:
        raise _unsupported(name, config.model_type) from e
    if free is not None and n_params * 4 * 1.3 > free:   # float32 weights plus room for activations
        raise _too_big(name, n_params, device, free)
    kw = dict(attn_implementation="eager", trust_remote_code=False, dtype=torch.float32, output_loading_info=True)
    if local and any(Path(src).glob("*.safetensors")):
        kw["use_safetensors"] = True
    try:
        def weights(lfo: bool):
            if not lfo:                          # from the hub: the files first, showing the hub's progress
                download(src)
            return cls.from_pretrained(src, local_files_only=lfo, **kw)

        hf, info = fetch(name, weights, "weights", local)
        tok = fetch(name, lambda lfo: tf.AutoTokenizer.from_pretrained(src, local_files_only=lfo,
                                                                        trust_remote_code=False), "tokenizer", local)
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(f"Cannot load “{name}”: {type(e).__name__}: {e}") from e
    missing = [k for k in info.get("missing_keys", []) if spec.head_keys and k.startswith(spec.head_keys)]
    if missing and head == MASKED_LM:              # the head would be random: use the encoder alone
        hf, head = hf.base_model, ENCODER
    elif missing:
        raise ModelLoadError(f"“{name}” lacks the weights of its {spec.head} head ({', '.join(missing[:3])} ...): "
                             "the lab will not show predictions of a randomly initialised head.")
    hf.to(device).eval()
    n_params = sum(p.numel() for p in {id(p): p for p in hf.parameters()}.values())
    return hf, head, tok, n_params
