"""Acknowledgments: reading a peer's ACK cheaply, building one for the simulator.

``read_ack`` splits the ACK itself instead of running python-hl7's full
parse: an ACK is MSH, MSA and maybe ERR, and only MSA-1..3 and ERR matter, so
a direct split is both correct and several times cheaper on the send path.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from daemon.hl7.delimiters import Delimiters, read_delimiters
from daemon.hl7.errors import InvalidHL7
from daemon.hl7.escape import escape_text, unescape_text

ACCEPTED = frozenset({"AA", "CA"})  # application / commit accept
ERRORED = frozenset({"AE", "CE"})  # application / commit error
REJECTED = frozenset({"AR", "CR"})  # application / commit reject
ACK_CODES = ACCEPTED | ERRORED | REJECTED  # HL7 table 0008

# ERR fields worth showing an operator, most telling first, with how many
# components to keep: user message, diagnostic information, HL7 error code and
# application error code (code and text, not the coding system), the v2.3-style
# ERR-1, error location.
_ERR_FIELDS = ((8, None), (7, None), (3, 2), (5, 2), (1, None), (2, None))


@dataclass(frozen=True, slots=True)
class Ack:
    code: str  # MSA-1, one of ACK_CODES
    control_id: str  # MSA-2: the MSH-10 of the message acknowledged
    text: str = ""  # MSA-3, unescaped
    errors: tuple[str, ...] = ()  # one readable line per ERR segment
    message: str = field(default="", repr=False)  # the whole ACK as decoded

    @property
    def accepted(self) -> bool:
        return self.code in ACCEPTED

    @property
    def rejected(self) -> bool:
        return self.code in REJECTED

    @property
    def errored(self) -> bool:
        return self.code in ERRORED

    @property
    def summary(self) -> str:
        """One line for an operator: ``AR: unknown patient (204 Unknown key identifier)``."""
        line = self.code + (f": {self.text}" if self.text else "")
        if self.errors:
            line += f" ({'; '.join(self.errors)})"
        return line


def _readable(value: str, d: Delimiters, components: int | None) -> str:
    value = d.component.join(value.split(d.component)[:components])
    parts = re.split(f"[{re.escape(d.component + d.repetition + d.subcomponent)}]+", value)
    return unescape_text(" ".join(p for p in parts if p.strip()), d).strip()


def _describe_err(fields: list[str], d: Delimiters) -> str:
    seen: list[str] = []
    for n, components in _ERR_FIELDS:
        if len(fields) > n:
            text = _readable(fields[n], d, components)
            if text and text not in seen:
                seen.append(text)
    return "; ".join(seen)


def _ack_text(raw: bytes, encoding: str) -> str:
    text = raw.decode(encoding, "replace").lstrip()
    body = text.rstrip()
    tail = text[len(body) :]
    # spaces before the last segment's terminator are its data (e.g. the end of
    # MSA-2); what follows the terminator, or an unterminated end, is not
    ends = [i for i in (tail.find("\r"), tail.find("\n")) if i != -1]
    text = body + tail[: min(ends)] if ends else body
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    return text


def plain_accept(raw: bytes, sent_id: bytes, encoding: str = "utf-8") -> str | None:
    """The ACK's text when ``raw`` is a plain AA or CA of the message whose MSH-10
    is ``sent_id`` (bytes as sent); None when it is anything else, to be read
    by ``read_ack``. The common answer, judged on bytes without building an
    ``Ack``: when this returns text, ``read_ack`` would accept the same ACK for
    the same control id."""
    if not raw.startswith(b"MSH") or len(raw) < 4 or b"\n" in raw:  # LF: read_ack normalises
        return None
    sep = raw[3:4]
    if not 0x21 <= sep[0] <= 0x7E or sep.isalnum():  # printable ASCII punctuation only
        return None
    at = raw.find(b"\rMSA" + sep)
    if at == -1 or raw.find(b"\rMSA\r", 0, at + 1) != -1:  # a bare MSA first: read_ack's error
        return None
    end = raw.find(b"\r", at + 1)
    if end == -1:  # the last segment: read_ack strips its end, which may touch MSA-2
        return None
    fields = raw[at + 1 : end].split(sep, 3)
    if len(fields) < 3 or fields[1] not in _PLAIN_ACCEPT or fields[2] != sent_id:
        return None
    return _ack_text(raw, encoding)


_PLAIN_ACCEPT = (b"AA", b"CA")


def read_ack(raw: bytes, encoding: str = "utf-8") -> Ack:
    """The acknowledgment in ``raw`` (one MLLP frame's content).

    Raises ``InvalidHL7`` when it is not an ACK: no MSH first, no MSA, or an
    MSA-1 that is not in HL7 table 0008."""
    text = _ack_text(raw, encoding)
    if not text.startswith("MSH") or len(text) < 4:
        raise InvalidHL7(f"ACK: no MSH segment at the start, got {text[:20]!r}")
    sep = text[3]
    if sep.isalnum() or sep.isspace():
        raise InvalidHL7(f"ACK: bad field separator {sep!r} after MSH")
    msa: list[str] | None = None
    err_segments: list[list[str]] = []
    msa_head, err_head = "MSA" + sep, "ERR" + sep
    for segment in text.split("\r")[1:]:
        if msa is None and (segment.startswith(msa_head) or segment == "MSA"):
            msa = segment.split(sep)
        elif segment.startswith(err_head):
            err_segments.append(segment.split(sep))
    if msa is None:
        raise InvalidHL7("ACK: no MSA segment")
    code = msa[1].strip() if len(msa) > 1 else ""
    if code not in ACK_CODES:
        raise InvalidHL7(f"ACK: MSA-1 {code!r} is not an acknowledgment code (AA AE AR CA CE CR)")
    reply = msa[3] if len(msa) > 3 else ""
    d: Delimiters | None = None
    if err_segments or reply:
        try:
            d = read_delimiters(text)
        except InvalidHL7:
            d = Delimiters(field=sep)
        reply = unescape_text(reply, d)
    errors = tuple(e for e in (_describe_err(s, d) for s in err_segments) if e) if d else ()
    return Ack(code, msa[2] if len(msa) > 2 else "", reply.strip(), errors, text)


def new_control_id() -> str:
    """A fresh 20-character message control id."""
    return "ACK" + uuid.uuid4().hex[:17].upper()


def build_ack(
    message: bytes,
    code: str = "AA",
    text: str = "",
    encoding: str = "utf-8",
    control_id: str | None = None,
) -> bytes:
    """An original-mode ACK for ``message``: sender and receiver swapped,
    MSH-9 ``ACK^<trigger>^ACK``, a new MSH-10, the same version and
    processing id, and ``MSA|<code>|<MSH-10 of message>|<text>``."""
    if code not in ACK_CODES:
        raise ValueError(f"unknown acknowledgment code {code!r}")
    decoded = message.decode(encoding, "replace").lstrip()
    if not decoded.startswith("MSH"):
        raise InvalidHL7("no MSH segment at the start of the message")
    d = read_delimiters(decoded)
    head = re.split("[\r\n]", decoded, maxsplit=1)[0]
    msh = head.split(d.field)

    def get(n: int) -> str:  # MSH-n; list index n-1 because MSH-1 is the separator
        return msh[n - 1] if len(msh) >= n else ""

    type_parts = get(9).split(d.component)
    trigger = type_parts[1] if len(type_parts) > 1 else ""
    message_type = d.component.join(("ACK", trigger, "ACK")) if trigger else "ACK"
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    header = [
        "MSH",
        d.encoding_characters,
        get(5),  # sending application: whoever received the message
        get(6),
        get(3),
        get(4),
        stamp,
        "",
        message_type,
        control_id or new_control_id(),
        get(11) or "P",
        get(12),
    ]
    msa = ["MSA", code, get(10)]
    if text:
        msa.append(escape_text(text, d))
    return (d.field.join(header) + "\r" + d.field.join(msa) + "\r").encode(encoding)
