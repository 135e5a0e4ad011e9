"""What the benchmarks in ``ops/bench`` share: the databases they run on (``backends``),
the processes they start (``processes``), statistics and output (``report``) and their
common command-line options (``cli``)."""
