"""The store: the only code that writes SQL (``sync.Store``, awaited through
``aio.AsyncStore``). May import domain, config and resilience; nothing above."""
