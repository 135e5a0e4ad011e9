"""Bounds that more than one layer checks: one definition of each, read by the store,
the API's schema and the command line alike."""

from __future__ import annotations

MAX_ID = 2**63 - 1  # the largest id a row can have (a signed 64-bit integer)
MAX_PAGE = 500  # the most items one page of a listing holds
LIST_WINDOW = 7 * 86400.0  # seconds: what a listing covers when no ``since`` is given
