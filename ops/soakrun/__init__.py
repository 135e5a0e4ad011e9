"""The soak (``ops/soak.py``): its hospital, suite, load, samples and verdicts."""
