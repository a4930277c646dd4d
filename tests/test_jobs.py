"""Background training: a job learns, stops when asked, respects the server's cap, and stops by
itself when its page stops sending heartbeats. Uses the 'tiny' preset (seconds on a CPU)."""
import time

import pytest
import torch

from model.api import LabError
from model.training.jobs import JobLimitError, JobManager, open_trained, save_trained

pytestmark = pytest.mark.slow                                        # trainings, seconds each


def _wait(job, timeout=120):
    """Wait for the job's thread to end; fail after `timeout` s."""
    job.join(timeout)
    assert not job.alive, f"the job was still running {timeout} s after it was asked to stop (step {job.snapshot().step})"


def _until(job, done, what: str, timeout: float = 120, every: float = 0.05) -> None:
    """Send the job heartbeats (as its page would) until done() is true; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            s = job.snapshot()
            pytest.fail(f"{what}: not after {timeout} s (status {s.status!r}, step {s.step} of {s.steps})")
        job.heartbeat()
        time.sleep(every)


@pytest.mark.unit
def test_job_runs_and_its_loss_falls():
    mgr = JobManager(max_running=1)
    job = mgr.start("t", preset="tiny")
    _until(job, lambda: not job.alive, "the tiny training did not finish")
    s = job.snapshot()
    assert s.status == "done" and s.step == s.steps == 40
    for k, c in s.curves.items():
        assert len(c.train) == 40
        assert sum(c.train[-5:]) / 5 < sum(c.train[:5]) / 5 - 0.5, k          # clearly lower than at the start
        assert c.heldout[-1] < c.heldout[0], k
        assert s.tokens_per_s[k] > 0
        assert s.samples[k] and isinstance(s.samples[k][-1][1], str)


@pytest.mark.unit
def test_stop_and_resume():
    mgr = JobManager(max_running=1)
    job = mgr.start("t", preset="quick")
    _until(job, lambda: job.snapshot().step >= 2, "the training did not reach step 2", every=0.02)
    job.stop()
    _wait(job)
    s = job.snapshot()
    assert s.status == "stopped" and 2 <= s.step < s.steps
    mgr.resume(job)
    _until(job, lambda: job.snapshot().step >= s.step + 2, f"the resumed training did not reach step {s.step + 2}",
           every=0.02)
    job.stop()
    _wait(job)
    assert job.snapshot().step >= s.step + 2 and job.snapshot().status == "stopped"


@pytest.mark.unit
def test_cap_is_enforced():
    mgr = JobManager(max_running=1)
    job = mgr.start("a", preset="quick")
    try:
        with pytest.raises(JobLimitError, match="limit is 1"):
            mgr.start("b", preset="tiny")
    finally:
        job.stop()
        _wait(job)
    other = mgr.start("b", preset="tiny")              # room again once the first has stopped
    other.stop()
    _wait(other)
    with pytest.raises(LabError):
        mgr.start("c", preset="no-such-preset")


@pytest.mark.unit
def test_stale_heartbeat_stops_the_job():
    mgr = JobManager(max_running=1)
    job = mgr.start("gone", preset="quick", heartbeat_timeout=0.3)     # nobody calls heartbeat()
    _wait(job, 60)
    s = job.snapshot()
    assert s.status == "abandoned" and s.step < s.steps and "heartbeat" in s.message


@pytest.mark.apptest
def test_saved_model_opens_like_a_builtin(tmp_path):
    mgr = JobManager(max_running=1)
    job = mgr.start("t", preset="tiny", kinds=("rnn", "transformer"))
    with pytest.raises(LabError):
        save_trained(job, "lstm")                       # not trained in this job
    _until(job, lambda: not job.alive, "the tiny training did not finish")
    ids = torch.tensor([[job.tok.bos_id] + job.tok.encode("the keys to the old cabinet").ids])
    for kind in ("rnn", "transformer"):
        lab = open_trained(save_trained(job, kind, tmp_path / kind), "cpu")
        with torch.no_grad():
            torch.testing.assert_close(lab.module(ids).logits, job.models[kind].eval()(ids).logits)
        r = lab.run("the keys to the old cabinet")
        assert r.next_logits.shape == (len(lab.vocab),)
        assert len(lab.generate("the keys", 5, greedy=True).steps) >= 1
    from model import NextToken, PositionTable, Recurrent

    assert isinstance(lab, PositionTable) and lab.arch.family == "decoder-only Transformer"
    rnn = open_trained(tmp_path / "rnn", "cpu")
    assert isinstance(rnn, NextToken) and not isinstance(rnn, (PositionTable, Recurrent))
    assert rnn.arch.family == "vanilla RNN"
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT, charts

    for page, drawn in (("sampling", True), ("attention", False), ("positional", True)):
        at = AppTest.from_file(str(ROOT / "lab.py"), default_timeout=120)
        at.session_state["trained_models"] = {"RNN trained live": str(tmp_path / "rnn")}
        at.session_state["model_choice"] = "RNN trained live"
        at.session_state["text"] = "the keys to the old cabinet"
        at.run()
        at.switch_page(f"app_pages/{page}.py")
        at.run()
        assert not at.exception and not at.error, (page, [e.message for e in at.exception])
        assert bool(charts(at)) == drawn or page == "positional", page       # the sidebar's trained model opens


@pytest.mark.apptest
def test_train_page_starts_stops_and_reports_the_cap(monkeypatch):
    from streamlit.testing.v1 import AppTest

    import model.training.jobs
    from conftest import ROOT

    MANAGER = JobManager(max_running=1)                # one worker and no queue: a full server says so
    monkeypatch.setattr(model.training.jobs, "MANAGER", MANAGER)    # (the queue's page test: test_training_queue.py)

    at = AppTest.from_file(str(ROOT / "lab.py"), default_timeout=180)
    at.run()
    at.switch_page("app_pages/train.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    blocker = MANAGER.start("someone else", preset="quick")           # the server's only slot is taken
    try:
        at.button(key="train_start").click().run()
        assert any("limit is" in w.value for w in at.warning)
        assert "train_job" not in at.session_state
    finally:
        blocker.stop()
        _wait(blocker)
    at.button(key="train_start").click().run()
    job = at.session_state["train_job"]
    try:
        assert job.alive
        _until(job, lambda: job.snapshot().step >= 2, "the training started by the page did not reach step 2", every=0.1)
        at.button(key="train_stop").click().run()
        _wait(job)
        assert job.snapshot().status == "stopped"
    finally:
        job.stop()
        _wait(job)
