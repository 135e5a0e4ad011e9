"""What the tests share: waiting on a condition (``waiting``), ports for the
servers they start (``ports``), a role run as a real process (``processes``),
the ``outboxd`` command run as a process (``cli``), the data they read
(``data``: files under ``tests/data``), a clock moved by hand (``clock``) and
the scheduler role run in this process on it (``scheduler``)."""
