"""The frame every role stands on: signals, drain, health, reload (``frame``), the
event loop (``eventloop``) and the metrics each process exports (``metrics``). May
import operator, the store, config and everything below; no role, no face."""
