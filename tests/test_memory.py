"""The server's allocator settings (model/serving/memory.py): blocks of at least LAB_MALLOC_MMAP_MB are mapped on
their own and returned to the system when freed, so a server's RSS follows what it holds (issue 19's flood: glibc's
own dynamic threshold kept 3.1-3.3 GiB of freed trace memory resident)."""
import subprocess
import sys
from pathlib import Path

import pytest

from model.serving import memory

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parent.parent

# In a child process: glibc raises its mmap threshold past 4 MiB after the first such block is freed (as a server
# does on its first trace); then 60 blocks of 4 MiB that are freed, each beside a 64 KiB block that is kept (a
# cache's long-lived tensors between a forward pass's short-lived ones). RSS before, at the peak, after the frees.
CHILD = """
import sys
sys.path.insert(0, {root!r})
from model.serving.memory import apply_malloc_settings
if {apply}:
    apply_malloc_settings()
import torch
def rss():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) // 1024
x = torch.ones(1 << 20); del x
base = rss()
keep, tmp = [], []
for i in range(60):
    tmp.append(torch.ones(1 << 20))
    keep.append(torch.ones(16 << 10))
peak = rss()
del tmp
print(base, peak, rss())
"""


def _child(apply: bool, **env) -> tuple[int, int, int]:
    import os

    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), apply=apply)], capture_output=True,
                         text=True, timeout=120, env={**os.environ, **env})
    assert out.returncode == 0, out.stderr[-2000:]
    base, peak, after = map(int, out.stdout.split())
    return base, peak, after


# each setting: its variable, the reader, its default, a value and what it reads as, the glibc setting that wins
# over it, and values it refuses (0 always means glibc's own: None)
SETTINGS = {
    "mmap threshold": ("LAB_MALLOC_MMAP_MB", "mmap_threshold_bytes", 2**20, ("4", 4 * 2**20),
                       ("MALLOC_MMAP_THRESHOLD_", "65536"), ("lots", "64", "-1")),
    "arena cap": ("LAB_MALLOC_ARENAS", "arena_max", 2, ("4", 4), ("MALLOC_ARENA_MAX", "8"),
                  ("many", "-1", "1.5", "65")),
}


@pytest.mark.parametrize("what", list(SETTINGS))
def test_each_allocator_setting_comes_from_its_variable_and_glibcs_own_wins(monkeypatch, what):
    var, reader, default, (value, read), (glibc_var, glibc_value), bad_values = SETTINGS[what]
    read_setting = getattr(memory, reader)
    for v in (var, glibc_var, "GLIBC_TUNABLES"):
        monkeypatch.delenv(v, raising=False)
    assert read_setting() == default
    monkeypatch.setenv(var, value)
    assert read_setting() == read
    monkeypatch.setenv(var, "0")                                     # glibc's own
    assert read_setting() is None
    for bad in bad_values:
        monkeypatch.setenv(var, bad)
        with pytest.raises(ValueError, match=var):
            read_setting()
    monkeypatch.setenv(var, value)
    monkeypatch.setenv(glibc_var, glibc_value)                       # glibc's own setting wins
    assert read_setting() is None


@pytest.mark.skipif(memory._glibc() is None, reason="glibc's malloc only (this system's C library is another)")
def test_freed_large_blocks_go_back_to_the_system_with_the_servers_setting():
    base, peak, after = _child(True, LAB_MALLOC_MMAP_MB="1")
    assert peak - base >= 200, (base, peak, after)                 # 240 MiB were alive
    assert after - base <= 30, f"{after - base} MiB still resident after every large block was freed"
    d_base, d_peak, d_after = _child(False)                          # glibc's defaults, for the record
    print(f"glibc defaults: {d_after - d_base} MiB still resident after the frees; with the setting {after - base}")


@pytest.mark.slow
def test_a_server_applies_the_setting_at_start_up_and_keeps_one_torch_thread(tmp_path):
    """A real server (`streamlit run app.py`), probed from inside (devkit/memprobe.py): app.py set the mmap threshold
    and the arena cap, and the script threads still run torch with LAB_TORCH_THREADS' default of 1. (A first version
    imported the setting from the `model` package at app.py's top, which imported torch in the main thread: the
    server then ran torch with 2 threads, 6x slower traces in a loaded flood. app.py now loads the allocator's module
    by its path.)"""
    import asyncio
    import json
    import os
    import time

    from bench.load import Session, serve, server_env
    from devkit.memprobe import install

    install(tmp_path)
    out = tmp_path / "probe.jsonl"
    env = server_env(LAB_MEMPROBE=str(out), PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env.pop("LAB_TORCH_THREADS", None)
    env.pop("LAB_MALLOC_MMAP_MB", None)
    env.pop("LAB_MALLOC_ARENAS", None)
    with serve(env=env) as srv:
        async def visit():
            s = Session(srv.url, 120)
            try:
                await s.open("attention", "")
            finally:
                await s.close()

        asyncio.run(visit())
        time.sleep(1.5)
    rows = [json.loads(line) for line in out.read_text().splitlines() if '"torch_threads"' in line]
    last = rows[-1]
    assert last["torch_threads"] == 1, last["torch_threads"]
    if memory._glibc() is not None:
        assert last["malloc"] == {"glibc": True, "mmap_threshold": 2**20, "arena_max": 2}, last["malloc"]
