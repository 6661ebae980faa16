"""The app server's once-per-process setup (dcnviz.app.server): start-up objects frozen, memory
returned to the system (issue 16)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.helpers import ROOT


def test_start_up_objects_are_frozen_once_and_later_garbage_is_still_collected() -> None:
    code = textwrap.dedent(
        """
        import gc, sys, weakref
        from dcnviz.app import server
        assert server.freeze_startup() is True
        frozen = gc.get_freeze_count()
        assert frozen > 10_000, frozen
        assert all(m in sys.modules for m in server.page_modules()), server.page_modules()
        assert "torch" in sys.modules and "plotly.graph_objects" in sys.modules
        assert server.freeze_startup() is False and gc.get_freeze_count() == frozen  # once per process

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle made after the freeze, e.g. by a session that has ended
        gone = weakref.ref(a)
        del a, b
        gc.collect(2)
        assert gone() is None
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_freed_memory_is_returned_by_one_thread_per_process() -> None:
    code = textwrap.dedent(
        """
        import threading
        from dcnviz.app import server
        assert server.release_memory() is True  # glibc (the CI's and the server's platform)
        first = server.start_trimmer(interval=0.05)
        assert first.is_alive() and first.daemon
        assert server.start_trimmer() is first  # once per process
        assert [t.name for t in threading.enumerate()].count("dcnviz-malloc-trim") == 1
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


class FakeState(dict):  # type: ignore[type-arg]
    """Streamlit's session state as the sweeper uses it: ``filtered_state`` and ``del state[key]``."""

    @property
    def filtered_state(self) -> dict[str, object]:
        return dict(self)


def test_the_sweeper_clears_only_sessions_that_have_ended_and_then_forgets_them() -> None:
    from dcnviz.app.server import SessionSweeper

    ended: set[str] = set()
    sweeper = SessionSweeper(ended=lambda sid: sid in ended)
    a, b = FakeState(dcnviz_models={"trained:1": b"x" * 100}, train_job="job"), FakeState(model_key="k")
    sweeper.watch("a", a, start=False)
    sweeper.watch("b", b, start=False)
    sweeper.watch("a", FakeState(), start=False)  # a later run of the same session: the first state stays
    assert sweeper.sweep() == [] and a and b  # nobody has left: nothing cleared
    ended.add("a")
    assert sweeper.sweep() == ["a"]
    assert a == {} and b == {"model_key": "k"}
    assert sweeper.watched() == ["b"]  # forgotten once cleared
    assert sweeper.sweep() == []


def test_a_session_is_ended_only_when_streamlit_has_let_go_of_it() -> None:
    from dcnviz.app.server import session_ended

    assert session_ended("no-such-session") is False  # no server runtime here: never "ended"
