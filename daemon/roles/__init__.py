"""The roles a process can run (``outboxd run NAME``: ``daemon.cli.roles.ROLES``),
each a set of loops on the frame (``daemon.runtime.frame``). May import runtime,
suite, operator and everything below; no face."""
