"""Sources: code that reads another system and answers what to store; one package
per kind (``khanza/``), ``registry`` maps their names. A source never loops and
never writes to the store: the poller role does both. May import domain and the
protocol packages (bpjs); never the store, config or anything above."""
