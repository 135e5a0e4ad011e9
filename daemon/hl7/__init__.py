"""HL7 v2: message checks and normal form, the fast control-id read, ACKs,
MLLP framing, and reading a message by its fields' positions. No I/O and
nothing of the database."""

from daemon.hl7.ack import (
    ACCEPTED,
    ACK_CODES,
    ERRORED,
    REJECTED,
    Ack,
    build_ack,
    plain_accept,
    read_ack,
)
from daemon.hl7.delimiters import Delimiters, read_delimiters
from daemon.hl7.errors import InvalidHL7
from daemon.hl7.escape import escape_problem, escape_text, unescape_text
from daemon.hl7.fields import Field, Segment, identifiers, segments
from daemon.hl7.framing import FrameDecoder, FramingError, frame
from daemon.hl7.message import (
    MessageInfo,
    ascii_compatible,
    control_id,
    normalize,
    raw_control_id,
    validate,
)

__all__ = [
    "ACCEPTED",
    "ACK_CODES",
    "ERRORED",
    "REJECTED",
    "Ack",
    "Delimiters",
    "Field",
    "FrameDecoder",
    "FramingError",
    "InvalidHL7",
    "MessageInfo",
    "Segment",
    "ascii_compatible",
    "build_ack",
    "control_id",
    "escape_problem",
    "escape_text",
    "frame",
    "identifiers",
    "normalize",
    "plain_accept",
    "raw_control_id",
    "read_ack",
    "read_delimiters",
    "segments",
    "unescape_text",
    "validate",
]
