"""Notifications: notify targets (``smtp``, a signed ``webhook``), one module
each, and the alert rules that decide when to use them (``rules``)."""
