"""Job kinds the scheduler runs, one module each (``purge``, ``export``,
``status_check``, ``report``, ``http``); ``registry`` maps their names. A job
does its work through the store's operations and the notifiers it is handed, and
answers a small JSON output; it never writes SQL and never loops."""
