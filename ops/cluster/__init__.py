"""Several outboxd hosts on one machine, for the scale-out test and the chaos run:
database servers of their own (``servers``: a PostgreSQL and a MariaDB that may
be restarted without touching anyone else's), a host (``host``: a directory with
its supervisord.conf, YAML file, ports and node name), a SIMRS Khanza hospital
on MariaDB (``khanza``) and the checks made at the end (``checks``)."""
