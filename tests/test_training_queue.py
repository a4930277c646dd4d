"""Training for a class: worker processes from a pool, a fair queue with places, a worker that dies,
saves onto a full or read-only disk. Uses the 'tiny' preset (seconds); every wait has a deadline."""
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import model.training.jobs as jobs
from model.api import LabError
from model.training.jobs import JobLimitError, JobManager, save_trained

pytestmark = pytest.mark.slow


def _until(done, what: str, jobs_=(), timeout: float = 180, every: float = 0.05) -> None:
    """Heartbeat the jobs (as their pages would) until done() is true; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {timeout} s ("
                        + ", ".join(f"{j.owner}: {j.snapshot().status} step {j.step}" for j in jobs_) + ")")
        for j in jobs_:
            j.heartbeat()
        time.sleep(every)


def _finished_tiny(owner="t", kinds=("rnn",)):
    mgr = JobManager(max_running=1)
    job = mgr.start(owner, preset="tiny", kinds=kinds)
    _until(lambda: not job.alive, "the tiny training did not finish", [job])
    assert job.snapshot().status == "done"
    return job


def test_three_sessions_with_a_pool_of_one_run_one_at_a_time_in_the_order_asked():
    mgr = JobManager(max_running=1, max_queued=5)
    a, b, c = all_ = [mgr.start(o, preset="quick", kinds=("rnn",)) for o in "abc"]
    assert [j.snapshot().status for j in all_][1:] == ["queued", "queued"]
    assert (b.snapshot().place, c.snapshot().place) == (1, 2)
    assert a.snapshot().place is None and a.snapshot().status in ("starting", "running")
    with pytest.raises(JobLimitError, match="already have a training"):
        mgr.start("b", preset="tiny")                            # one job per session
    # once the first job has a measured pace, the waiting ones get estimated starts, in queue order
    _until(lambda: c.snapshot().starts_in is not None, "no estimated start for the third job", all_)
    sb, sc = b.snapshot(), c.snapshot()
    assert (sb.status, sc.status) == ("queued", "queued") and 0 <= sb.starts_in < sc.starts_in
    order = []
    for j in all_:                                               # each runs in turn; stopping it starts the next
        _until(lambda: j.snapshot().step >= 1, f"{j.owner}'s training did not start", all_)
        order.append(j.owner)
        states = [x.snapshot() for x in all_]
        assert sum(s.status in ("starting", "running", "stopping") for s in states) == 1    # one worker
        if j is b:
            assert (c.snapshot().status, c.snapshot().place) == ("queued", 1)              # moved up
        j.stop()
        _until(lambda: not j.alive, f"{j.owner}'s training did not stop", all_)
    assert order == ["a", "b", "c"]
    assert [j.snapshot().status for j in all_] == ["stopped"] * 3
    assert all(j.pid is None for j in all_)
    mgr.shutdown()


def test_a_student_who_leaves_the_queue_is_never_started_and_the_next_moves_up():
    mgr = JobManager(max_running=1, max_queued=5)
    a, b, c = all_ = [mgr.start(o, preset="quick", kinds=("rnn",)) for o in "abc"]
    b.stop()                                                     # "Leave the queue"
    assert b.snapshot().status == "stopped" and not b.alive
    _until(lambda: c.snapshot().place == 1, "the third student moving up to place 1", all_)
    _until(lambda: a.snapshot().step >= 1, "the first training running", all_)
    a.stop()
    _until(lambda: c.snapshot().step >= 1, "the third student's training starting", all_)
    assert b.snapshot().status == "stopped" and b.snapshot().step == 0 and b.pid is None
    c.stop()
    _until(lambda: not c.alive, "the third training stopping", all_)
    mgr.resume(b)                                                # back in the queue, from the start
    _until(lambda: b.snapshot().step >= 1, "the resumed (re-queued) training starting", all_)
    mgr.shutdown()


def test_killed_worker_gives_its_student_a_message_and_the_next_job_starts():
    mgr = JobManager(max_running=1, max_queued=5)
    a = mgr.start("a", preset="quick", kinds=("transformer",))
    b = mgr.start("b", preset="tiny", kinds=("rnn",))
    _until(lambda: a.snapshot().step >= 1, "the first training did not reach step 1", [a, b])
    assert b.snapshot().status == "queued"
    os.kill(a.pid, signal.SIGKILL)
    _until(lambda: not a.alive, "the killed job was not marked finished", [a, b])
    s = a.snapshot()
    assert s.status == "failed"
    assert "stopped unexpectedly" in s.message and "signal 9" in s.message and "start a new training" in s.message
    with pytest.raises(LabError, match="cannot be resumed"):
        mgr.resume(a)
    _until(lambda: not b.alive, "the queued training did not run after the kill", [b])
    assert b.snapshot().status == "done" and b.snapshot().step == b.snapshot().steps
    mgr.shutdown()


def test_worker_over_its_memory_limit_fails_with_a_message_and_the_server_lives(monkeypatch):
    monkeypatch.setenv("LAB_TRAIN_WORKER_MB", "300")
    mgr = JobManager(max_running=1)
    job = mgr.start("a", preset="tiny", kinds=("rnn",))
    _until(lambda: not job.alive, "the job under a 300 MiB limit did not end", [job])
    s = job.snapshot()
    assert s.status == "failed" and "LAB_TRAIN_WORKER_MB" in s.message, s.message
    monkeypatch.setenv("LAB_TRAIN_WORKER_MB", "4096")
    ok = mgr.start("a", preset="tiny", kinds=("rnn",))           # the same student, a new worker
    _until(lambda: not ok.alive, "the next job did not finish", [ok])
    assert ok.snapshot().status == "done"
    mgr.shutdown()


def test_weights_come_back_through_safetensors_and_stop_resume_continues_them():
    mgr = JobManager(max_running=1)
    job = mgr.start("t", preset="quick", kinds=("lstm",))
    _until(lambda: job.snapshot().step >= 2, "the training did not reach step 2", [job])
    job.stop()
    _until(lambda: not job.alive, "the stopped job did not end", [job])
    s = job.snapshot()
    assert s.status == "stopped" and job.saved_step == s.step
    assert sorted(p.name for p in job.folder.iterdir()) == ["state.json", "state.safetensors"]
    before = {n: t.clone() for n, t in job.models["lstm"].state_dict().items()}
    mgr.resume(job)
    _until(lambda: job.snapshot().step >= s.step + 2, "the resumed job did not advance", [job])
    job.stop()
    _until(lambda: not job.alive, "the resumed job did not stop", [job])
    after = job.models["lstm"].state_dict()
    assert job.saved_step >= s.step + 2 and any(not (after[n] == before[n]).all() for n in before)
    folder = job.folder
    mgr.shutdown()
    assert not folder.exists()                                   # temporary folders are cleaned


@pytest.fixture(scope="module")
def finished_rnn():
    """One finished tiny RNN training, for the tests that only save it (none of them changes the job)."""
    return _finished_tiny()


def test_save_onto_a_full_disk_gives_a_clear_message_and_leaves_nothing(tmp_path, monkeypatch, finished_rnn):
    job = finished_rnn

    def full(folder, *a):
        (folder / "model.safetensors").write_bytes(b"\0" * 100)     # half written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(jobs, "_write_checkpoint", full)
    with pytest.raises(LabError, match="disk is full"):
        save_trained(job, "rnn", tmp_path / "saved")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(jobs, "save_model", lambda *a: (_ for _ in ()).throw(
        Exception("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")))
    monkeypatch.setattr(jobs, "_write_checkpoint", _real_write)     # safetensors' own error for a full disk
    with pytest.raises(LabError, match="disk is full"):
        save_trained(job, "rnn", tmp_path / "saved")
    assert list(tmp_path.iterdir()) == []


_real_write = jobs._write_checkpoint


def _mount_tmpfs(where, options: str) -> None:
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root (the monkeypatched tests cover the same code)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")


def test_save_onto_a_real_full_tmpfs_leaves_nothing(tmp_path):
    job = _finished_tiny(kinds=("transformer",))
    disk = tmp_path / "disk"
    disk.mkdir()
    _mount_tmpfs(disk, "size=16k")
    try:
        with pytest.raises(LabError, match="disk is full"):
            save_trained(job, "transformer", disk / "saved")
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_save_into_a_read_only_folder_gives_a_clear_message(tmp_path, finished_rnn):
    job = finished_rnn
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
    else:
        _mount_tmpfs(ro, "ro,size=1m")
    try:
        with pytest.raises(LabError, match="read-only|may not write") as e:
            save_trained(job, "rnn", ro / "saved")
        assert "Nothing was written" in str(e.value)
        assert list(ro.iterdir()) == []
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(ro)], check=False)
        else:
            ro.chmod(0o755)


def test_default_save_folders_and_job_folders_are_removed_when_the_server_exits(tmp_path):
    from conftest import ROOT

    script = tmp_path / "server.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from model.training.jobs import MANAGER, save_trained\n"
        "if __name__ == '__main__':\n"
        "    j = MANAGER.start('x', preset='tiny', kinds=('rnn',), heartbeat_timeout=600)\n"
        "    assert j.join(240), 'the tiny training did not finish'\n"
        "    a, b = save_trained(j, 'rnn'), save_trained(j, 'rnn')\n"
        "    assert a != b and a.parent == b.parent\n"
        "    print(sorted(p.name for p in a.iterdir()))\n"
        "    print('FOLDERS', a, b, j.folder, MANAGER.root, flush=True)\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "['config.json', 'model.safetensors', 'tokenizer.json']" in r.stdout
    folders = [Path(p) for p in r.stdout.split("FOLDERS", 1)[1].split()]
    assert len(folders) == 4 and not [p for p in folders if p.exists()]          # all removed at exit
    assert not [p for p in folders[0].parent.parent.glob(folders[0].parent.name + "*")]


@pytest.mark.apptest
def test_train_page_queues_a_second_student_and_shows_the_place(monkeypatch):
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT

    mgr = JobManager(max_running=1, max_queued=5)
    monkeypatch.setattr(jobs, "MANAGER", mgr)
    blocker = mgr.start("someone else", preset="quick", kinds=("rnn",))
    try:
        at = AppTest.from_file(str(ROOT / "lab.py"), default_timeout=180)
        at.run()
        at.switch_page("app_pages/train.py")
        at.run()
        at.button(key="train_start").click().run()
        assert not at.exception, [e.message for e in at.exception]
        job = at.session_state["train_job"]
        assert job.snapshot().status == "queued" and job.snapshot().place == 1
        assert any("number 1" in i.value and "queue" in i.value for i in at.info), [i.value for i in at.info]
        assert any("server is busy" in w.value for w in at.warning), [w.value for w in at.warning]
        blocker.stop()
        _until(lambda: job.snapshot().step >= 1, "the queued page's training did not start", [job, blocker])
        job.stop()
        _until(lambda: not job.alive, "the page's training did not stop", [job])
    finally:
        mgr.shutdown()


def _train_page():
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT

    at = AppTest.from_file(str(ROOT / "lab.py"), default_timeout=180)
    at.run()
    at.switch_page("app_pages/train.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _estimate_sentence(at) -> str:
    return next(c.value for c in at.caption if "Trainings run in the background" in c.value)


@pytest.mark.apptest
def test_train_page_says_the_queue_is_empty_when_only_the_load_is_high(monkeypatch):
    """A high load with nobody waiting: no 'wait for its turn' (nobody is ahead), but slower than estimated."""
    mgr = JobManager(max_running=1, max_queued=5)
    monkeypatch.setattr(jobs, "MANAGER", mgr)
    monkeypatch.setattr(jobs.os, "getloadavg", lambda: (99.0, 99.0, 99.0))
    monkeypatch.setattr(jobs, "_PACE", {})             # no pace measured yet in this process (other tests train)
    try:
        at = _train_page()
        warned = [w.value for w in at.warning]
        assert len(warned) == 1, warned
        assert "load is high (load 99.0 on" in warned[0] and "the queue is empty, so a training starts at once" \
            in warned[0] and "wait for its turn" not in warned[0], warned[0]
        assert warned[0].endswith("slower than on a quiet server.")          # nothing measured yet: no estimate
        quick = jobs.PRESETS["quick"]
        for k in jobs.KINDS:                            # a pace measured on this server: the estimate to compare with
            monkeypatch.setitem(jobs._PACE, jobs._pace_key(quick, k), 1e-5)
        at.run()
        assert "takes about" in _estimate_sentence(at)
        assert [w.value for w in at.warning][0].endswith("slower than estimated.")
    finally:
        mgr.shutdown()


@pytest.mark.apptest
def test_train_page_estimate_follows_the_sessions_own_training(monkeypatch):
    """Before any pace is measured the sentence says so; once this session's training has run a few steps, the same
    sentence gives the time at the measured pace, as the progress gives the time left."""
    mgr = JobManager(max_running=1, max_queued=5)
    monkeypatch.setattr(jobs, "MANAGER", mgr)
    monkeypatch.setattr(jobs, "_PACE", {})
    try:
        at = _train_page()
        assert "can estimate only once a training of this preset has run" in _estimate_sentence(at)
        at.button(key="train_start").click().run()
        assert not at.exception, [e.message for e in at.exception]
        job = at.session_state["train_job"]
        if jobs.estimate_seconds("quick", jobs.KINDS) is None:         # not measured yet: said so, and why
            assert "measures from the first steps of your training" in _estimate_sentence(at)
        _until(lambda: jobs.estimate_seconds("quick", jobs.KINDS) is not None, "no pace measured", [job])
        at.run()
        said = _estimate_sentence(at)
        assert "takes about" in said and "tokens/s, measured on this server" in said, said
        job.stop()
        _until(lambda: not job.alive, "the page's training did not stop", [job])
    finally:
        mgr.shutdown()


def test_workers_do_not_rerun_the_servers_main_script(tmp_path):
    """Under `streamlit run`, __main__ is the page script; multiprocessing would run it again in each worker."""
    from conftest import ROOT

    script = tmp_path / "page.py"                                # no `if __name__ == "__main__"` guard, like a page
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "print('MAIN RAN', flush=True)\n"
        "from model.training.jobs import JobManager\n"
        "m = JobManager(max_running=1)\n"
        "j = m.start('x', preset='tiny', kinds=('rnn',), heartbeat_timeout=600)\n"
        "print('finished' if j.join(240) else 'timed out', j.snapshot().status, flush=True)\n"
        "m.shutdown()\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.stdout.count("MAIN RAN") == 1, r.stdout + r.stderr[-2000:]
    assert "finished done" in r.stdout, r.stdout + r.stderr[-2000:]
