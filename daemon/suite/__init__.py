"""The suite as supervisord runs it: its programs over XML-RPC (``supervisor``) and
whether each is up and healthy (``readiness``). May import runtime, config and below."""
