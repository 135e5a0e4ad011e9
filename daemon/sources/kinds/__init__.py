"""The source kinds, one module each; ``daemon.sources.registry`` maps their names."""
