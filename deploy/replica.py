"""A replica as python -m deploy runs it: `python -m deploy.replica run app.py [streamlit flags]` is `streamlit run`
with one change for a session that moved to this replica (its host or process was lost and the browser reconnected
here, behind nginx).

Streamlit's frontend, when its websocket comes back, does not rerun the page: it expects the server to still hold
its session, and keeps what it drew. On another replica (or a restarted one) the session is new and has never run,
so the student's next move of a widget inside an `@st.fragment` (the live sections: the Sampling page's *Number of
draws*) asks for a fragment the new session does not have, and Streamlit drops the request ("The fragment with id
... does not exist anymore"): the page stays stale however often the student moves it. Here such a request, in a
session that has not run the page yet, runs the whole page instead, with the widget states the browser sent (all
of them, the moved one included): the student sees the page with the value they chose, from this replica.
A session that has run its page keeps Streamlit's behaviour (a fragment removed by a full rerun is still dropped).
"""
from __future__ import annotations

import sys


def install() -> None:
    from streamlit.proto.ClientState_pb2 import ClientState
    from streamlit.runtime.app_session import AppSession

    if getattr(AppSession.request_rerun, "_lab_failover", False):
        return
    original = AppSession.request_rerun

    def request_rerun(self, client_state: ClientState | None) -> None:
        if client_state is not None and client_state.fragment_id and not getattr(self, "_lab_ran", False) \
                and not self.has_fragment(client_state.fragment_id):
            whole = ClientState()
            whole.CopyFrom(client_state)
            whole.fragment_id = ""
            client_state = whole
        if client_state is None or not client_state.fragment_id:
            self._lab_ran = True
        return original(self, client_state)

    request_rerun._lab_failover = True
    AppSession.request_rerun = request_rerun


def main() -> None:
    install()
    from streamlit.web.cli import main as streamlit_main

    sys.argv = ["streamlit", *sys.argv[1:]]
    streamlit_main(prog_name="streamlit")


if __name__ == "__main__":
    main()
