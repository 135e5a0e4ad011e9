"""What the tests share: waiting on a condition (``waiting``), ports for the
servers they start (``ports``), a role run as a real process (``processes``),
the ``outboxd`` command run as a process (``cli``), and the data they read
(``data``: files under ``tests/data``)."""
