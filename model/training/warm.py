"""Imported once by the training workers' forkserver (jobs.py: `set_forkserver_preload`): the built-in corpus
(30,000 generated sentences, encoded) is made there, before any worker is forked, so each training starts from
the forkserver's copy instead of generating it again. On a 2-core machine, 2026-12-02: a second training's first
step 2.3 s after it was started (2.3 CPU-s), 1.0 s with this (1.1 CPU-s). A failure here is left for the worker
to meet and report as it would have without it (the forkserver must not die of it)."""
from . import jobs, train  # noqa: F401  (train: the batches' code, imported by every worker)

try:
    jobs.corpus()
except Exception:           # noqa: BLE001  (the worker calls corpus() again and reports what goes wrong)
    pass
