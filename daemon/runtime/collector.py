"""Python's cyclic garbage collector during a role's start.

A start makes tens of thousands of objects (modules, classes, validators, the
settings), nearly all living as long as the process: the 80 collections a
dispatcher's start ran freed about 800 of them, for a few percent of its
instructions. Collecting them once the role runs would pause its first deliveries
instead. So ``outboxd run`` turns the collector off once its command line is parsed,
before it imports the command (``pause``), and the frame, once the role is built,
moves every object made so far to the permanent generation, which no collection
scans, and turns it on again (``resume``). A start that fails before (a bad file, a
port in use) turns it on again as it was, nothing frozen; so does a process forked
in between (a store worker forked instead of exec'd), in the child. Standard library
only."""

from __future__ import annotations

import gc
import os

_paused = False


def pause() -> None:
    """Turn the collector off until ``resume``."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume(freeze: bool = True) -> None:
    """Turn the collector on again where ``pause`` turned it off, having frozen what
    exists (``freeze``); otherwise (resumed already, a role whose start did not go
    through ``outboxd run``, the collector turned off by someone else) nothing."""
    global _paused
    if _paused:
        _paused = False
        if freeze:
            gc.freeze()
        gc.enable()


def _in_a_child() -> None:
    """A child forked while the start is paused does not wait for its parent's
    frame: its collector is on again, as it was (nothing where none is paused)."""
    resume(freeze=False)


os.register_at_fork(after_in_child=_in_a_child)
