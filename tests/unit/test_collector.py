"""The cyclic garbage collector during a role's start (daemon.runtime.collector):
off from ``pause`` to ``resume``, then on with what the start made frozen; left
alone where nothing paused it. Each case runs in a fresh interpreter, so that the
test process's own collector is never touched."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support.processes import ROOT


def run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_pause_turns_the_collector_off_and_resume_freezes_what_exists_and_turns_it_on():
    out = run(
        """
        import gc
        from daemon.runtime import collector
        collector.pause()
        off = not gc.isenabled()
        made = [[i] for i in range(5000)]  # objects of the start, tracked by gc
        collector.resume()
        print(off, gc.isenabled(), gc.get_freeze_count() >= 5000)
        collector.resume()  # a second resume changes nothing
        print(gc.isenabled(), gc.get_freeze_count() >= 5000)
        gc.unfreeze()
        collector.pause()
        collector.resume(freeze=False)  # a start that failed: on, nothing frozen
        print(gc.isenabled(), gc.get_freeze_count())
        """
    )
    assert out.splitlines() == ["True True True", "True True", "True 0"]


def test_resume_without_pause_leaves_the_collector_as_it_was():
    out = run(
        """
        import gc
        from daemon.runtime import collector
        collector.resume()
        print(gc.isenabled(), gc.get_freeze_count())
        gc.disable()  # turned off by someone else: not outboxd's to turn on
        collector.pause()
        collector.resume()
        print(gc.isenabled(), gc.get_freeze_count())
        """
    )
    assert out.splitlines() == ["True 0", "False 0"]


def test_a_start_that_fails_leaves_the_collector_on_and_nothing_frozen(tmp_path):
    bad = tmp_path / "o.yaml"
    bad.write_text("database: sqlite:///o.db\nchanels: {}\n")  # a misspelt key: exit 78
    out = run(
        f"""
        import gc
        from daemon.cli import main
        code = main(["run", "dispatcher", "-c", {str(bad)!r}])
        print(code, gc.isenabled(), gc.get_freeze_count())
        """
    )
    assert out.splitlines()[-1] == "78 True 0"


def test_a_child_forked_while_the_start_is_paused_collects_again():
    """A store worker forked from a dispatcher's start (the test suite's zygote forks
    it instead of exec'ing it) does not wait for its parent's frame."""
    out = run(
        """
        import gc, os
        from daemon.runtime import collector
        collector.pause()
        pid = os.fork()
        if pid == 0:
            os._exit(0 if gc.isenabled() and gc.get_freeze_count() == 0 else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), gc.isenabled())
        """
    )
    assert out == "0 False"  # the child collects; the parent waits for its frame
