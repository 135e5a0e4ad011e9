"""The one error the HL7 code raises for bad input."""

from __future__ import annotations


class InvalidHL7(ValueError):
    """The bytes are not a usable HL7 v2 message (or ACK); the text says what and where."""
