"""The channel kinds, one module each; ``daemon.channels.registry`` maps their names."""
