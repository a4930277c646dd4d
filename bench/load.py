"""Server load test without browsers: N headless sessions speak Streamlit's own websocket protocol.

    python -m bench.load --sessions 1,10,30,60             # starts its own server on a free local port
    python -m bench.load --sessions 1,10 --url http://127.0.0.1:8501 --pids 1234
    python -m bench.load --replicas 2 --sessions 30,60     # N replicas behind nginx (deploy/)
    python -m bench.load --stall --sessions 10             # others' reruns while one session loads a big model
    python -m bench.load --cold                            # cold start and import-time breakdown

Each session does what a browser tab does (read from the installed Streamlit's frontend bundle and
starlette_websocket.py): it opens /_stcore/stream with the subprotocol "streamlit", sends a
``rerun_script`` BackMsg (query string, page name, no widget state, context info), reads the
ForwardMsgs (new_session, deltas, script_finished), keeps every widget's state as the frontend's
widget manager would, and sends the full widget state with one value changed (and the widget's
fragment id when it lives in an ``@st.fragment``, as the frontend does). A rerun is timed from
sending that BackMsg to the ``script_finished`` ForwardMsg. Like the browser, the client tells the
server which large messages it holds (``cached_message_hashes``), so unchanged charts come back as
references.

Loopback only: the client refuses any host other than 127.0.0.1 / localhost.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, urlparse

ROOT = Path(__file__).resolve().parent.parent
OK_STATUSES = ("FINISHED_SUCCESSFULLY", "FINISHED_FRAGMENT_RUN_SUCCESSFULLY")
WIDGET_KINDS = ("slider", "selectbox", "radio", "number_input", "checkbox", "text_input", "text_area",
                "multiselect", "button")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


# ----------------------------------------------------------------------------- the headless session
@dataclass
class Widget:
    id: str
    kind: str                  # element type: slider, selectbox, radio, ...
    label: str
    fragment_id: str           # "" when not inside an @st.fragment
    proto: Any                 # the element's widget proto (Slider, Selectbox, ...)


class SessionError(RuntimeError):
    pass


def _check_loopback(url: str) -> None:
    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"the load test only talks to loopback, not {host!r}")


def _initial_state(w: Widget):
    """The WidgetState the frontend registers when the widget is drawn (no user input yet)."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    p, s = w.proto, WidgetState(id=w.id)
    if w.kind == "slider":
        if p.type == p.SELECT_SLIDER:
            s.string_array_value.data[:] = list(p.raw_value) if p.set_value else [p.options[int(i)] for i in p.default]
        else:
            s.double_array_value.data[:] = list(p.value) if p.set_value else list(p.default)
    elif w.kind in ("selectbox", "radio"):
        if p.set_value and p.HasField("raw_value"):
            s.string_value = p.raw_value
        elif p.HasField("default") and 0 <= p.default < len(p.options):
            s.string_value = p.options[p.default]
        else:
            return None
    elif w.kind == "number_input":
        v = p.value if p.set_value else p.default
        if p.data_type == p.INT:
            s.int_value = int(v)
        else:
            s.double_value = float(v)
    elif w.kind == "checkbox":
        s.bool_value = p.value if p.set_value else p.default
    elif w.kind in ("text_input", "text_area"):
        s.string_value = p.value if p.set_value else p.default
    elif w.kind == "multiselect":
        s.string_array_value.data[:] = list(p.raw_values) if p.set_value else [p.options[i] for i in p.default]
    else:
        return None
    return s


def _value_of(state) -> Any:
    kind = state.WhichOneof("value")
    v = getattr(state, kind)
    return list(v.data) if hasattr(v, "data") else v


class Session:
    """One browser tab's worth of protocol, no browser. Use inside a running asyncio loop."""

    def __init__(self, base_url: str, timeout: float = 120.0, headers: dict[str, str] | None = None):
        _check_loopback(base_url)
        self.base_url = base_url.rstrip("/")
        self.headers = headers or {}            # e.g. {"Cookie": "lab_replica=..."} behind nginx
        self.timeout = timeout
        self.ws = None
        self.reader: asyncio.Task | None = None
        self.finished: asyncio.Queue[str] = asyncio.Queue()
        self.page_hash = ""
        self.session_id = ""                    # the server's id for this session (new_session), e.g. for uploads
        self.query = ""
        self.page = ""
        self.widgets: dict[str, Widget] = {}
        self.states: dict[str, Any] = {}        # widget id -> WidgetState, as the frontend keeps them
        self.cached: set[str] = set()           # hashes of cacheable messages received
        self.errors: list[str] = []             # exceptions the script showed, page not found
        self.client_notes: list[str] = []       # widgets whose state this client could not read
        self.metrics: dict[str, str] = {}       # st.metric label -> value, latest drawn
        self.charts: dict[str, str] = {}        # plotly chart id -> spec, latest drawn
        self.alerts: list[tuple[str, str]] = []  # (ERROR / WARNING / INFO / SUCCESS, text) of every alert drawn
        self.bytes_in = 0
        self.messages_in = 0

    async def connect(self) -> None:
        from websockets.asyncio.client import connect

        u = urlparse(self.base_url)
        ws_url = f"{'wss' if u.scheme == 'https' else 'ws'}://{u.netloc}{u.path}/_stcore/stream"
        self.ws = await asyncio.wait_for(connect(ws_url, subprotocols=["streamlit"], max_size=None,
                                                 additional_headers=self.headers,
                                                 ping_interval=None, open_timeout=self.timeout), self.timeout)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        try:
            async for raw in self.ws:
                self.bytes_in += len(raw)
                self.messages_in += 1
                msg = ForwardMsg()
                msg.ParseFromString(raw)
                kind = msg.WhichOneof("type")
                if msg.metadata.cacheable and msg.hash:
                    self.cached.add(msg.hash)
                if kind == "delta":
                    self._delta(msg.delta)
                elif kind == "new_session":
                    self.page_hash = msg.new_session.page_script_hash
                    self.session_id = msg.new_session.initialize.session_id or self.session_id
                elif kind == "navigation":       # st.navigation: the page that ran (new_session names app.py)
                    self.page_hash = msg.navigation.page_script_hash
                elif kind == "page_info_changed":
                    self.query = msg.page_info_changed.query_string
                elif kind == "page_not_found":
                    self.errors.append(f"page not found: {msg.page_not_found.page_name}")
                elif kind == "script_finished":
                    self.finished.put_nowait(ForwardMsg.ScriptFinishedStatus.Name(msg.script_finished))
        except Exception as e:                   # connection closed or broken: wake up whoever waits
            self.finished.put_nowait(f"closed: {type(e).__name__}: {e}")
            return
        self.finished.put_nowait("closed")

    def _delta(self, delta) -> None:
        if delta.WhichOneof("type") != "new_element":
            return
        el = delta.new_element
        kind = el.WhichOneof("type")
        if kind == "metric":                    # lets a test see that a changed widget changed the output
            self.metrics[el.metric.label] = el.metric.body
        if kind == "plotly_chart":              # likewise for figures: chart id -> its latest spec
            self.charts[el.plotly_chart.id] = el.plotly_chart.spec
        if kind == "alert":
            from streamlit.proto.Alert_pb2 import Alert

            self.alerts.append((Alert.Format.Name(el.alert.format), el.alert.body[:300]))
        if kind == "exception":
            self.errors.append(f"{el.exception.type}: {el.exception.message}"[:300])
        if kind not in WIDGET_KINDS:
            return
        p = getattr(el, kind)
        w = Widget(p.id, kind, p.label, delta.fragment_id, p)
        self.widgets[w.id] = w
        if w.id not in self.states or getattr(p, "set_value", False):
            try:
                s = _initial_state(w)
            except Exception as e:              # a widget this client cannot read: the server keeps its value
                self.client_notes.append(f"{kind} {p.label!r}: {type(e).__name__}: {e}")
                s = None
            if s is not None:
                self.states[w.id] = s

    def _client_state(self, page_name: str = "", fragment_id: str = ""):
        from streamlit.proto.ClientState_pb2 import ClientState, ContextInfo

        cs = ClientState(query_string=self.query, page_script_hash=self.page_hash, page_name=page_name,
                         fragment_id=fragment_id,
                         context_info=ContextInfo(timezone="UTC", timezone_offset=0, locale="en-US",
                                                  url=f"{self.base_url}/{self.page}", is_embedded=False,
                                                  color_scheme="light"))
        cs.widget_states.widgets.extend(self.states.values())
        cs.cached_message_hashes.extend(sorted(self.cached))
        return cs

    async def _rerun(self, cs) -> float:
        from streamlit.proto.BackMsg_pb2 import BackMsg

        while not self.finished.empty():         # nothing stale may answer for this run
            self.finished.get_nowait()
        t0 = time.perf_counter()
        await self.ws.send(BackMsg(rerun_script=cs).SerializeToString())
        try:
            status = await asyncio.wait_for(self.finished.get(), self.timeout)
        except asyncio.TimeoutError:
            raise SessionError(f"no script_finished within {self.timeout:.0f} s") from None
        dt = time.perf_counter() - t0
        if status not in OK_STATUSES:
            raise SessionError(f"script ended with {status}")
        if self.errors:
            raise SessionError("the page showed an exception: " + self.errors[-1])
        return dt

    async def open(self, page: str = "", query: str = "") -> float:
        """Open a page ('' = home, 'sampling', ...) as a fresh tab does; seconds to script_finished."""
        if self.ws is None:
            await self.connect()
        self.page, self.query, self.page_hash = page, query, ""
        return await self._rerun(self._client_state(page_name=page))

    def widget(self, label: str) -> Widget:
        """The widget with this key (its id ends in "-key") or else the first with this label."""
        ws = list(self.widgets.values())
        found = [w for w in ws if w.id.endswith("-" + label)] or [w for w in ws if w.label == label]
        if not found:
            raise SessionError(f"no widget with key or label {label!r}; have {sorted({w.label for w in ws})}")
        return found[0]

    def value(self, label: str) -> Any:
        return _value_of(self.states[self.widget(label).id])

    def next_value(self, label: str) -> Any:
        """A different value a user could pick: one slider step, the next option."""
        w = self.widget(label)
        p, cur = w.proto, self.value(label)
        if w.kind == "slider" and p.type != p.SELECT_SLIDER:
            v = cur[0] + p.step if cur[0] + p.step <= p.max + 1e-9 else cur[0] - p.step
            return [round(v, 10)]
        if w.kind == "slider":                               # a select slider: the next option
            opts, now = list(p.options), (cur[0] if cur else None)
            return [opts[(opts.index(now) + 1) % len(opts)] if now in opts else opts[0]]
        if w.kind in ("selectbox", "radio"):
            opts = list(p.options)
            return opts[(opts.index(cur) + 1) % len(opts)] if cur in opts else opts[0]
        if w.kind == "checkbox":
            return not cur
        if w.kind == "number_input":
            return cur + (p.step or 1)
        raise SessionError(f"don't know how to move a {w.kind}")

    async def change(self, label: str, value: Any = None) -> float:
        """Move a widget (to `value`, or to next_value) and time the rerun to script_finished."""
        w = self.widget(label)
        value = self.next_value(label) if value is None else value
        s = self.states[w.id]
        kind = s.WhichOneof("value")
        if hasattr(getattr(s, kind), "data"):
            getattr(s, kind).data[:] = list(value)
        else:
            setattr(s, kind, value)
        return await self._rerun(self._client_state(fragment_id=w.fragment_id))

    async def click(self, label: str) -> float:
        """Press a button: a trigger that is true for this one rerun only, as the frontend sends it."""
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        w = self.widget(label)
        if w.kind != "button":
            raise SessionError(f"{label!r} is a {w.kind}, not a button")
        if w.proto.disabled:
            raise SessionError(f"the button {label!r} is disabled")
        self.states[w.id] = WidgetState(id=w.id, trigger_value=True)
        try:
            return await self._rerun(self._client_state(fragment_id=w.fragment_id))
        finally:
            self.states.pop(w.id, None)

    def disabled(self, label: str) -> bool:
        return bool(self.widget(label).proto.disabled)

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader


# ----------------------------------------------------------------------------- a server to test
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_health(url: str, timeout: float, proc: subprocess.Popen | None = None) -> float:
    """Poll /_stcore/health until it answers 200; seconds waited."""
    t0 = time.perf_counter()
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"{url} not healthy after {timeout:.0f} s")
        time.sleep(0.05)


def streamlit_cmd(port: int, app: Path = ROOT / "app.py") -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
            "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]


def server_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", **extra}


@dataclass
class Server:
    url: str
    pids: list[int]
    procs: list[subprocess.Popen] = field(default_factory=list)
    log: str = ""
    direct: list[str] = field(default_factory=list)     # behind nginx: each replica's own url


@contextlib.contextmanager
def serve(port: int | None = None, timeout: float = 120, env: dict[str, str] | None = None,
          log: str | None = None) -> Iterator[Server]:
    """`streamlit run app.py` on a free loopback port; yields a Server (url, pid); stops it afterwards."""
    port = port or free_port()
    logf = open(log or tempfile.mktemp(prefix="lab-load-", suffix=".log"), "w+")
    proc = subprocess.Popen(streamlit_cmd(port), cwd=ROOT, env=env or server_env(), stdout=logf,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_health(url, timeout, proc)
        except RuntimeError as e:
            logf.seek(0)
            raise RuntimeError(f"{e}\n{logf.read()[-3000:]}") from None
        yield Server(url, [proc.pid], [proc], logf.name)
    finally:
        stop_process(proc)
        logf.close()
        if log is None:
            os.unlink(logf.name)


def stop_process(proc: subprocess.Popen, grace: float = 10) -> None:
    from deploy import stop

    stop(proc, grace)


def rss_mib(pids: list[int]) -> tuple[float, float]:
    """(current RSS, peak RSS) in MiB, summed over the processes (from /proc/<pid>/status)."""
    cur = peak = 0.0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        m = re.search(r"VmRSS:\s+(\d+)", text)
        h = re.search(r"VmHWM:\s+(\d+)", text)
        cur += int(m.group(1)) / 1024 if m else 0
        peak += int(h.group(1)) / 1024 if h else 0
    return cur, peak


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by the processes."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(f[11]) + int(f[12])) / tick
    return total


# ----------------------------------------------------------------------------- load scenarios
def pct(xs: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation; nan if empty."""
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


@dataclass
class LoadResult:
    n: int
    open_times: list[float]
    rerun_times: list[float]
    rerun_stamps: list[tuple[float, float]]     # (start, end) perf_counter of each rerun
    errors: list[str]
    rss: tuple[float, float] = (0.0, 0.0)
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0                   # this process (the N headless clients), same window
    wall_s: float = 0.0
    loadavg: float = 0.0                        # the machine's 1-minute load average at the end
    cpu_by_pid: list[float] = field(default_factory=list)   # server CPU s per process (replicas' balance)

    @property
    def p50(self) -> float:
        return pct(self.rerun_times, 0.5)

    @property
    def p95(self) -> float:
        return pct(self.rerun_times, 0.95)

    def summary(self) -> str:
        return (f"N={self.n}: rerun p50 {self.p50 * 1000:.0f} ms, p95 {self.p95 * 1000:.0f} ms, "
                f"max {max(self.rerun_times, default=float('nan')) * 1000:.0f} ms (n={len(self.rerun_times)}); "
                f"page open p50 {pct(self.open_times, .5):.2f} s, p95 {pct(self.open_times, .95):.2f} s; "
                f"server RSS {self.rss[0]:.0f} MiB (peak {self.rss[1]:.0f}); server CPU "
                f"{self.server_cpu_s:.1f} s, client CPU {self.client_cpu_s:.1f} s in {self.wall_s:.1f} s; "
                f"errors {len(self.errors)}; load average {self.loadavg:.1f}"
                + (f"; CPU by replica {' / '.join(f'{c:.1f}' for c in self.cpu_by_pid)} s"
                   if len(self.cpu_by_pid) > 1 else ""))


async def _user(url: str, page: str, query: str, label: str, reruns: int, think: float, seed: int,
                start: asyncio.Event, res: LoadResult, timeout: float) -> None:
    rng = random.Random(seed)
    s = Session(url, timeout)
    try:
        res.open_times.append(await s.open(page, query))
        await start.wait()
        await asyncio.sleep(rng.uniform(0, think))                  # users are not in lockstep
        for _ in range(reruns):
            t0 = time.perf_counter()
            res.rerun_times.append(await s.change(label))
            res.rerun_stamps.append((t0, time.perf_counter()))
            await asyncio.sleep(rng.uniform(0.5 * think, 1.5 * think))
    except Exception as e:
        res.errors.append(f"{type(e).__name__}: {e}")
    finally:
        await s.close()


async def _load(url: str, n: int, page: str, query: str, label: str, reruns: int, think: float,
                timeout: float, side: Any = None) -> LoadResult:
    res = LoadResult(n, [], [], [], [])
    start = asyncio.Event()
    users = [asyncio.create_task(_user(url, page, query, label, reruns, think, i, start, res, timeout))
             for i in range(n)]
    deadline = time.perf_counter() + timeout
    while len(res.open_times) + len(res.errors) < n and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)                                   # every tab open (a burst), then the sliders
    start.set()
    side_task = asyncio.create_task(side()) if side else None
    await asyncio.gather(*users)
    if side_task:
        await side_task
    return res


def run_load(url: str, n: int, pids: list[int] | None = None, page: str = "sampling",
             query: str = "text=" + quote("the bear ate the"), label: str = "Number of draws", reruns: int = 10,
             think: float = 2.0, timeout: float = 120.0) -> LoadResult:
    """N sessions open `page` at once, then each moves `label` `reruns` times, `think` s apart on
    average (uniform 0.5-1.5 x think)."""
    pids = pids or []
    cpu0, t0, c0 = cpu_seconds(pids), time.perf_counter(), time.process_time()
    each0 = [cpu_seconds([p]) for p in pids]
    res = asyncio.run(_load(url, n, page, query, label, reruns, think, timeout))
    res.wall_s = time.perf_counter() - t0
    res.client_cpu_s = time.process_time() - c0
    res.loadavg = os.getloadavg()[0]
    res.server_cpu_s = cpu_seconds(pids) - cpu0
    res.cpu_by_pid = [cpu_seconds([p]) - c for p, c in zip(pids, each0)]
    res.rss = rss_mib(pids)
    return res


def warm_up(url: str, page: str = "sampling", query: str = "text=" + quote("the bear ate the"),
            label: str = "Number of draws", timeout: float = 180) -> float:
    """First visit to a cold server (imports torch, loads the model): seconds to open the page."""
    async def go():
        s = Session(url, timeout)
        try:
            t = await s.open(page, query)
            await s.change(label)
            return t
        finally:
            await s.close()
    return asyncio.run(go())


def p95_knee(results: list[LoadResult], limit: float = 1.0) -> str:
    over = [r.n for r in results if r.p95 > limit or r.errors]
    if over:
        return f"N = {over[0]}"
    return f"not reached up to N = {max(r.n for r in results)}"


def load_sweep(url: str, pids: list[int], ns=(1, 10, 30, 60), log=print, **kw) -> list[LoadResult]:
    out = []
    for n in ns:
        r = run_load(url, n, pids, **kw)
        log("  " + r.summary())
        for e in r.errors[:3]:
            log(f"    error: {e}")
        out.append(r)
    return out


def make_gpt2_folder(d: str) -> str:
    """A GPT-2-small-sized model with random weights and a 50,257-word tokenizer, saved offline in d."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from devkit.hf_fixtures import save_word_tokenizer

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(d)
    save_word_tokenizer(d, vocab_size=50257)
    return d


def stall_test(url: str, pids: list[int], folder: str, n: int = 5, reruns: int = 30, think: float = 2.0,
               n_tokens: int = 128, delay: float = 12.0, timeout: float = 300.0) -> dict[str, Any]:
    """N sessions move the sampling page's "Number of draws" slider (a light load: the default is well below what one
    process serves); after `delay` s one more session opens the attention page on the big model in
    `folder` (its first visit loads the model from disk, traces n_tokens, draws the 144-head grid).
    Returns the others' rerun times before, during and after that page's load."""
    text = " ".join(f"w{i}" for i in range(n_tokens))
    big: dict[str, Any] = {}

    async def heavy():
        await asyncio.sleep(delay)
        s = Session(url, timeout)
        try:
            big["t0"] = time.perf_counter()
            big["open_s"] = await s.open("attention", f"model={quote(folder)}&text={quote(text)}")
            if len(s.charts) < 2:                   # a refused folder draws a message, not the grid
                raise SessionError(f"the attention page drew {len(s.charts)} figures, not the grid and a head")
        except Exception as e:
            big["error"] = f"{type(e).__name__}: {e}"
        finally:
            big["t1"] = time.perf_counter()
            await s.close()

    r0 = rss_mib(pids)
    res = asyncio.run(_load(url, n, "sampling", "text=" + quote("the bear ate the"), "Number of draws", reruns,
                            think, timeout, side=heavy))
    t0, t1 = big.get("t0", 0.0), big.get("t1", 0.0)
    return {"n": n, "think": think, "big_open_s": big.get("open_s"), "big_error": big.get("error"),
            "load_window_s": t1 - t0,
            "before": [b - a for a, b in res.rerun_stamps if b <= t0],
            "during": [b - a for a, b in res.rerun_stamps if a < t1 and b > t0],
            "after": [b - a for a, b in res.rerun_stamps if a >= t1],
            "errors": res.errors, "rss_before": r0, "rss_after": rss_mib(pids)}


# ----------------------------------------------------------------------------- cold start
def open_once(url: str, page: str = "", timeout: float = 180) -> float:
    """One headless session opens a page and closes: seconds to its script_finished."""
    async def go():
        s = Session(url, timeout)
        try:
            return await s.open(page)
        finally:
            await s.close()
    return asyncio.run(go())


def cold_start_ws(timeout: float = 180) -> dict[str, float]:
    """`streamlit run app.py` → health answers → home page's first script_finished over the websocket."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = subprocess.Popen(streamlit_cmd(port), cwd=ROOT, env=server_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        health = wait_health(url, timeout, proc)
        home = open_once(url, "", timeout)
        return {"health_s": health, "home_s": time.perf_counter() - t0, "home_script_s": home}
    finally:
        stop_process(proc)


def cold_start_browser(timeout: float = 180) -> dict[str, float]:
    """Chromium already running; `streamlit run app.py` → the home page fully drawn (devkit.browser.wait_idle)."""
    from devkit.browser import browser_page, wait_idle

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with browser_page() as page:
        page.goto("about:blank")
        t0 = time.perf_counter()
        proc = subprocess.Popen(streamlit_cmd(port), cwd=ROOT, env=server_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            health = wait_health(url, timeout, proc)
            page.goto(url + "/", wait_until="domcontentloaded")
            wait_idle(page, int(timeout * 1000))
            return {"health_s": health, "home_drawn_s": time.perf_counter() - t0}
        finally:
            stop_process(proc)


_IMPORT_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def import_breakdown(timeout: float = 180, top: int = 15) -> dict[str, Any]:
    """Run the server with -X importtime until the home page's first script_finished. Splits the
    imports into those done until the server answers health and those done after, until the home page
    has run (app.py's import-ahead thread starts at start-up, so torch's import falls in either part).
    Figures include importtime's own overhead."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    errf = tempfile.NamedTemporaryFile("w+", prefix="lab-importtime-", suffix=".log", delete=False)
    cmd = streamlit_cmd(port)
    cmd[1:1] = ["-X", "importtime"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=server_env(), stdout=subprocess.DEVNULL, stderr=errf)
    try:
        wait_health(url, timeout, proc)
        errf.flush()
        split = os.path.getsize(errf.name)
        open_once(url, "", timeout)
    finally:
        stop_process(proc)
    text = Path(errf.name).read_text(errors="replace")
    os.unlink(errf.name)
    parts = {"server start (until health answers)": text[:split],
             "after that, until the home page has run": text[split:]}
    out: dict[str, Any] = {}
    for name, part in parts.items():
        by_pkg: dict[str, float] = {}
        roots: list[tuple[float, str]] = []
        for line in part.splitlines():
            m = _IMPORT_LINE.match(line)
            if not m:
                continue
            self_us, cum_us, indent, mod = int(m.group(1)), int(m.group(2)), len(m.group(3)), m.group(4)
            pkg = mod.split(".")[0]
            by_pkg[pkg] = by_pkg.get(pkg, 0) + self_us / 1e6
            if indent <= 1:                                      # imported directly, not by another import
                roots.append((cum_us / 1e6, mod))
        out[name] = {"total_s": sum(by_pkg.values()),
                     "by_package": sorted(by_pkg.items(), key=lambda kv: -kv[1])[:top],
                     "top_level": sorted(roots, reverse=True)[:top]}
    return out


# ----------------------------------------------------------------------------- rows for bench/__main__.py
@contextlib.contextmanager
def target(url: str | None = None, pids: list[int] | None = None, replicas: int = 1,
           env: dict[str, str] | None = None) -> Iterator[Server]:
    """An existing server (url), one replica of our own (env: its environment), or N replicas behind nginx."""
    if url:
        yield Server(url, pids or [])
    elif replicas > 1:
        from deploy import cluster

        with cluster(replicas) as c:
            yield Server(c.url, c.pids, direct=[r.url for r in c.replicas])
    else:
        with serve(env=env) as s:
            yield s


def load_rows(ns=(1, 10, 30, 60), url: str | None = None, pids: list[int] | None = None, replicas: int = 1,
              reruns: int = 10, think: float = 2.0, stall: bool = True, log=print, page: str = "sampling",
              query: str = "text=" + quote("the bear ate the"), widget: str = "Number of draws") -> list[tuple[str, str, str]]:
    """(what, measured, target) rows: rerun p50/p95 and server RSS per N, the N where p95 passes 1 s,
    and (stall=True) the others' p95 while one session loads a GPT-2-small-sized model.
    `widget` is a widget key (or label) on `page`, e.g. page="attention", widget="att_layer_self"."""
    rows = []
    where = f"{replicas} replicas behind nginx" if replicas > 1 and not url else ("given server" if url else "1 replica")
    # the stall test opens a model folder by link: this server allows folders (LAB_ALLOW_FOLDERS=1)
    with target(url, pids, replicas, env=server_env(LAB_ALLOW_FOLDERS="1") if stall else None) as srv:
        for u in srv.direct or [srv.url]:                          # each replica's first visit loads torch + model
            warm_up(u, page, query, widget)
        results = load_sweep(srv.url, srv.pids, ns, log=log, reruns=reruns, think=think, page=page, query=query,
                             label=widget)
        for r in results:
            rows.append((f"{r.n} sessions ({where}), {page or 'home'} page, widget {widget} moved every ~{think:g} s: "
                         f"rerun to script_finished p50 / p95", f"{r.p50 * 1000:.0f} / {r.p95 * 1000:.0f} ms"
                         + (f" ({len(r.errors)} sessions failed)" if r.errors else ""),
                         "p95 <= 1 s at 30 sessions" if r.n == 30 else ""))
            rows.append((f"{r.n} sessions ({where}): page open in a burst p50 / p95; server RSS after",
                         f"{pct(r.open_times, .5):.2f} / {pct(r.open_times, .95):.2f} s; {r.rss[0]:.0f} MiB "
                         f"(peak {r.rss[1]:.0f} MiB)", "one model copy in memory"))
        rows.append((f"sessions at which rerun p95 passes 1 s ({where})", p95_knee(results), "> 30"))
        if stall and not (replicas > 1 and not url):
            with tempfile.TemporaryDirectory() as d:
                make_gpt2_folder(d)
                st = stall_test(srv.url, srv.pids, d)
            log(f"  stall: {stall_summary(st)}")
            rows.append((f"{st['n']} sessions moving the slider every ~{st['think']:g} s while one more opens the "
                         "attention page on a GPT-2-small-sized model (load + 128-token trace + 144-head grid): "
                         "their rerun times", stall_summary(st), "never stalled"))
    return rows


def stall_summary(st: dict[str, Any]) -> str:
    def q(xs):
        return f"{pct(xs, .95) * 1000:.0f} ms (max {max(xs, default=float('nan')) * 1000:.0f}, n={len(xs)})"
    big = f"{st['big_open_s']:.1f} s" if st.get("big_open_s") else f"failed ({st.get('big_error')})"
    return (f"p95 before {q(st['before'])} / during {q(st['during'])} / after {q(st['after'])}; "
            f"the big page took {big}; RSS {st['rss_before'][0]:.0f} → {st['rss_after'][0]:.0f} MiB"
            + (f"; {len(st['errors'])} sessions failed" if st["errors"] else ""))


def cold_rows(browser: bool = True, log=print, repeat: int = 3) -> list[tuple[str, str, str]]:
    """Cold start, `repeat` fresh servers each (median, and the range: on 2 cores one run varies by a second)."""
    import statistics

    def fmt(xs):
        return f"{statistics.median(xs):.2f} s ({min(xs):.2f}–{max(xs):.2f}, n={len(xs)})"

    rows = []
    ws = [cold_start_ws() for _ in range(repeat)]
    log(f"  cold start (websocket): {ws}")
    rows.append(("cold start: `streamlit run app.py` → health / home page's first script_finished (websocket), median "
                 "(range)", f"{fmt([w['health_s'] for w in ws])} / {fmt([w['home_s'] for w in ws])}", "<= 4 s"))
    if browser:
        b = [cold_start_browser() for _ in range(repeat)]
        log(f"  cold start (browser): {b}")
        rows.append(("cold start: `streamlit run app.py` → home page fully drawn in Chromium, median (range)",
                     fmt([x["home_drawn_s"] for x in b]), "<= 4 s"))
    imp = import_breakdown()
    for part, d in imp.items():
        pk = ", ".join(f"{k} {v:.2f}" for k, v in d["by_package"][:8])
        log(f"  imports during {part}: {d['total_s']:.2f} s; by package (s): {pk}")
        log("    imported directly, cumulative (s): " + ", ".join(f"{m} {t:.2f}" for t, m in d["top_level"][:10]))
        rows.append((f"imports during {part} (-X importtime, self time by package)", f"{d['total_s']:.2f} s: {pk}", ""))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", default="1,10,30,60", help="comma-separated N")
    ap.add_argument("--url", default="", help="an already running server (loopback); default: start one")
    ap.add_argument("--pids", default="", help="with --url: server pids whose RSS/CPU to report")
    ap.add_argument("--replicas", type=int, default=1, help=">1: start N replicas behind nginx (deploy/)")
    ap.add_argument("--reruns", type=int, default=10, help="slider moves per session")
    ap.add_argument("--think", type=float, default=2.0, help="mean seconds between a session's moves")
    ap.add_argument("--page", default="sampling", help="url path of the page the sessions open")
    ap.add_argument("--query", default="text=" + quote("the bear ate the"), help="its query string")
    ap.add_argument("--widget", default="Number of draws", help="key (or label) of the widget each session moves")
    ap.add_argument("--stall", action="store_true", help="also: others' p95 while one session loads a big model")
    ap.add_argument("--cold", action="store_true", help="only the cold start and import breakdown")
    ap.add_argument("--no-browser", action="store_true", help="cold start: skip the Chromium measurement")
    a = ap.parse_args(argv)
    if a.url:
        _check_loopback(a.url)
    if a.cold:
        rows = cold_rows(browser=not a.no_browser)
    else:
        ns = tuple(int(x) for x in a.sessions.split(",") if x)
        pids = [int(p) for p in a.pids.split(",") if p]
        rows = load_rows(ns, a.url or None, pids, a.replicas, a.reruns, a.think, a.stall, page=a.page, query=a.query,
                         widget=a.widget)
    print(f"\nmachine: {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at the end)")
    print("| what | measured | target |\n|---|---|---|")
    for what, fig, tgt in rows:
        print(f"| {what} | {fig} | {tgt} |")


if __name__ == "__main__":
    main()



def training_load_rows(n: int = 5, trainings: int = 2, reruns: int = 10, think: float = 2.0,
                       log=print) -> list[tuple[str, str, str]]:
    """Other sessions' rerun p50/p95 on the Sampling page, first alone, then while `trainings` sessions each run a
    training started with the Train page's button in the same server (background threads,
    LAB_MAX_TRAININGS=trainings). Fails unless every training really started (its Stop button enabled)."""
    rows = []
    with serve(env=server_env(LAB_MAX_TRAININGS=str(trainings))) as srv:
        warm_up(srv.url)
        quiet = run_load(srv.url, n, srv.pids, reruns=reruns, think=think)
        log(f"  alone: {quiet.summary()}")

        async def with_trainings():
            trainers = [Session(srv.url, 180) for _ in range(trainings)]
            try:
                for t in trainers:                      # the longer preset outlasts the load test
                    await t.open("train", "preset=longer")
                    await t.click("Start a new training")
                    if t.disabled("Stop"):
                        raise SessionError("the training did not start (its Stop button stayed disabled)")
                c0, w0 = cpu_seconds(srv.pids), time.perf_counter()
                busy = await _load(srv.url, n, "sampling", "text=" + quote("the bear ate the"), "Number of draws",
                                   reruns, think, 300)
                busy.server_cpu_s, busy.wall_s = cpu_seconds(srv.pids) - c0, time.perf_counter() - w0
                busy.rss = rss_mib(srv.pids)
                for t in trainers:                      # still training at the end: the load ran under training
                    await t.open("train", t.query)
                    if t.disabled("Stop"):
                        raise SessionError("a training ended before the load test did; use a longer preset")
                return busy
            finally:
                for t in trainers:
                    await t.close()

        busy = asyncio.run(with_trainings())
        log(f"  with {trainings} trainings: {busy.summary()}")
    rows.append((f"{n} sessions moving the Sampling page's slider every ~{think:g} s, rerun p50 / p95: alone",
                 f"{quiet.p50 * 1000:,.0f} / {quiet.p95 * 1000:,.0f} ms", ""))
    rows.append((f"same, while {trainings} trainings (preset longer, started with the Train page's button) run in the "
                 f"server's background threads; server CPU during the load",
                 f"{busy.p50 * 1000:,.0f} / {busy.p95 * 1000:,.0f} ms; {busy.server_cpu_s / max(busy.wall_s, 1e-9):.2f} "
                 "CPU-s per s", "p95 <= 1 s"))
    return rows


def serve_rows(log=print) -> list[tuple[str, str, str]]:
    """The time bounds tests/test_load.py used to assert, measured instead: a fresh server to two sessions that
    opened the Sampling page and moved its slider plus a 2-session load run; and, where nginx is installed,
    2 replicas behind nginx to a session routed by its cookie, with each replica's CPU seconds for that visit."""
    rows = []
    t0 = time.perf_counter()
    with serve() as srv:
        up = time.perf_counter() - t0

        async def one():
            s = Session(srv.url, timeout=60)
            try:
                await s.open("sampling", "text=" + quote("the bear ate the"))
                await s.change("Number of draws")
            finally:
                await s.close()

        async def both():
            await asyncio.gather(one(), one())

        asyncio.run(both())
        r = run_load(srv.url, 2, srv.pids, reruns=2, think=0.1, timeout=60)
        total = time.perf_counter() - t0
    log(f"  fresh server: healthy {up:.1f} s, everything {total:.1f} s ({len(r.errors)} errors)")
    rows.append(("fresh server → 2 sessions open the Sampling page and move its slider, then a 2-session load run "
                 "(tests/test_load.py's first test): health / everything", f"{up:.1f} / {total:.1f} s", "< 30 s"))
    from deploy import NGINX, cluster

    if not Path(NGINX).exists():
        log(f"  nginx not installed at {NGINX}: no 2-replica row")
        return rows
    t0 = time.perf_counter()
    with cluster(2) as c:
        with urllib.request.urlopen(c.url + "/", timeout=30) as resp:
            cookie = resp.headers["Set-Cookie"].split(";")[0]
        addr = cookie.split("=", 1)[1]
        mine = [f"127.0.0.1:{rep.port}" for rep in c.replicas].index(addr)
        cpu0 = [cpu_seconds([p]) for p in c.pids]

        async def routed():
            s = Session(c.url, timeout=60, headers={"Cookie": cookie})
            try:
                await s.open("sampling", "text=" + quote("the bear ate the"))
                await s.change("Number of draws")
            finally:
                await s.close()

        asyncio.run(routed())
        used = [cpu_seconds([p]) - c0 for p, c0 in zip(c.pids, cpu0)]
        total = time.perf_counter() - t0
    log(f"  2 replicas: {total:.1f} s; CPU used by the visit: cookie's replica {used[mine]:.2f} s, "
        f"other {used[1 - mine]:.2f} s")
    rows.append(("2 replicas behind nginx started → a session routed by its cookie opened the Sampling page and moved "
                 "its slider (tests/test_load.py's nginx test)", f"{total:.1f} s", "< 30 s"))
    rows.append(("same: CPU seconds of that visit on the cookie's replica / the other (both import torch at start-up)",
                 f"{used[mine]:.2f} / {used[1 - mine]:.2f} s", ""))
    return rows
