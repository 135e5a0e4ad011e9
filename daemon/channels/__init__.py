"""Channels speak one protocol each and answer with an ``Outcome``; they know
nothing of the database or of retry policy."""
