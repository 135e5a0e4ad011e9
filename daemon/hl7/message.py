"""One outgoing HL7 v2 message: normalising it, checking it at enqueue time,
and reading its control id (MSH-10) cheaply on the send path.

Normal form (what ``normalize`` returns and what is stored and sent):
segments separated by a single ``\\r``; ``\\r\\n`` and ``\\n`` become ``\\r``;
whitespace and blank segments before ``MSH``, and blank segments (nothing but
spaces and tabs) after the last one, are removed; the message ends with exactly
one ``\\r``. Nothing else changes: whitespace inside segments and at their ends
(the last one's too), empty trailing fields and escape sequences are field
content and are kept byte for byte.

The encoding must be ASCII-compatible (UTF-8, Latin-1, cp1252, ...): segment
and field separators are looked for as single bytes.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from functools import lru_cache

from daemon.hl7.delimiters import Delimiters, read_delimiters
from daemon.hl7.errors import InvalidHL7
from daemon.hl7.escape import escape_problem

_SEGMENT_ID = re.compile(r"[A-Z0-9]{3}")
_VERSION = re.compile(r"2\.\d+(?:\.\d+)*")
_EDGE_WHITESPACE = b" \t\r"
_FRAMING = ("\x0b", "\x1c")  # MLLP start and end bytes: never inside a message


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """A message that passed ``validate``, in normal form, with what identifies it."""

    payload: bytes
    control_id: str  # MSH-10
    message_type: str  # MSH-9 as written, e.g. ADT^A04^ADT_A01
    version: str  # MSH-12 (its first component), e.g. 2.5.1


def normalize(raw: bytes) -> bytes:
    """The message in normal form (see the module docstring); ``b""`` if it is blank."""
    text = raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r").lstrip(_EDGE_WHITESPACE)
    end = len(text)
    while end:  # drop blank segments at the end, keep the last one's own spaces
        cut = text.rfind(b"\r", 0, end)
        if text[cut + 1 : end].strip(b" \t"):
            break
        end = max(cut, 0)
    return text[:end] + b"\r" if end else b""


@lru_cache(maxsize=32)
def ascii_compatible(encoding: str) -> bool:
    """Whether ``encoding`` is a text encoding in which separators and framing
    bytes keep their ASCII byte values, and ASCII text of any length round-trips."""
    try:
        if not codecs.lookup(encoding)._is_text_encoding:
            return False
        sample = "MSH|^~\\&\r\x0b\x1c" + "PID|1||" + "0123456789" * 12 + "\r"
        encoded = sample.encode(encoding)
        return encoded == sample.encode("ascii") and encoded.decode(encoding) == sample
    except (LookupError, UnicodeError, ValueError):
        return False


def _decode(raw: bytes, encoding: str) -> None:
    try:
        raw.decode(encoding)
    except UnicodeDecodeError as exc:
        before = raw[: exc.start].replace(b"\r\n", b"\r").replace(b"\n", b"\r")
        segment = before.lstrip(_EDGE_WHITESPACE).count(b"\r") + 1
        raise InvalidHL7(
            f"byte {exc.start} (0x{raw[exc.start]:02x}) is not valid {encoding} "
            f"(segment {segment}): {exc.reason}"
        ) from None


def _check_segment(number: int, segment: str, d: Delimiters) -> list[str]:
    """The segment's fields (``segment.split(d.field)``), once it is well formed."""
    seg_id = segment[:3]
    if not _SEGMENT_ID.fullmatch(seg_id) or (len(segment) > 3 and segment[3] != d.field):
        if not segment:
            raise InvalidHL7(f"segment {number}: empty segment (a blank line inside the message)")
        raise InvalidHL7(
            f"segment {number} ({segment[:12]!r}): a segment must start with a 3-character "
            f"ID of upper-case letters or digits followed by {d.field!r}"
        )
    if number > 1 and seg_id == "MSH":
        raise InvalidHL7(
            f"segment {number} ({seg_id!r}): a second MSH; a payload holds exactly one message"
        )
    for byte in _FRAMING:
        if byte in segment:
            raise InvalidHL7(
                f"segment {number} ({seg_id!r}): contains the MLLP framing byte 0x{ord(byte):02X}"
            )
    fields = segment.split(d.field)
    # In MSH the separator itself is MSH-1, so list index i holds MSH-(i+1), and
    # MSH-2 (the encoding characters, the escape character among them) is skipped.
    first, shift = (2, 1) if seg_id == "MSH" else (1, 0)
    if segment.find(d.escape, 4 + len(fields[1]) if shift else 4) != -1:
        for index in range(first, len(fields)):
            problem = escape_problem(fields[index], d)
            if problem:
                raise InvalidHL7(
                    f"segment {number} ({seg_id!r}), {seg_id}-{index + shift}: {problem}"
                )
    return fields


def validate(raw: bytes, encoding: str = "utf-8") -> MessageInfo:
    """Check an outgoing message and return it in normal form.

    Raises ``InvalidHL7`` naming the problem and where it is
    (``segment 3 ('PV1'), PV1-7: ...``)."""
    if not ascii_compatible(encoding):
        raise InvalidHL7(f"encoding {encoding!r} is not ASCII-compatible; HL7 over MLLP needs one")
    _decode(raw, encoding)
    payload = normalize(raw)
    if not payload:
        raise InvalidHL7("empty message")
    text = payload.decode(encoding)
    if not text.startswith("MSH"):
        raise InvalidHL7(f"segment 1 ({text[:3]!r}): the first segment must be MSH")
    d = read_delimiters(text)
    segments = text[:-1].split("\r")
    # The MSH fields are read from the split the check makes: index i holds MSH-(i+1)
    # (index 0 is "MSH", 1 is MSH-2). The same values python-hl7's parse of the MSH
    # segment gives (``str(msh[n])``), without building its containers.
    msh = _check_segment(1, segments[0], d)
    for number in range(2, len(segments) + 1):
        _check_segment(number, segments[number - 1], d)

    def field(n: int) -> str:
        return msh[n - 1].strip() if len(msh) >= n else ""

    message_type, control, version = field(9), field(10), field(12)
    if not message_type.split(d.component)[0]:
        raise InvalidHL7("segment 1 ('MSH'), MSH-9: the message type is missing")
    if not control:
        raise InvalidHL7("segment 1 ('MSH'), MSH-10: the message control id is missing")
    version = version.split(d.component)[0]
    if not version:
        raise InvalidHL7("segment 1 ('MSH'), MSH-12: the version id is missing")
    if not _VERSION.fullmatch(version):
        raise InvalidHL7(
            f"segment 1 ('MSH'), MSH-12: {version!r} is not an HL7 v2 version such as 2.5.1"
        )
    return MessageInfo(payload, msh[9], message_type, version)


def raw_control_id(raw: bytes) -> bytes:
    """MSH-10 as bytes, read by splitting the first segment only (no full parse)."""
    end = raw.find(b"\r")
    head = raw if end == -1 else raw[:end]
    newline = head.find(b"\n")
    if newline != -1:
        head = head[:newline]
    if len(head) < 4 or not head.startswith(b"MSH"):
        raise InvalidHL7("no MSH segment at the start of the message")
    fields = head.split(head[3:4], 10)
    # fields[0] is "MSH", fields[1] is MSH-2, so fields[9] is MSH-10.
    if len(fields) < 10 or not fields[9].strip():
        raise InvalidHL7("segment 1 ('MSH'), MSH-10: the message control id is missing")
    return fields[9]


def control_id(raw: bytes, encoding: str = "utf-8") -> str:
    """MSH-10 of a message, read without a full parse: the send path's identity check."""
    return raw_control_id(raw).decode(encoding, "replace")
