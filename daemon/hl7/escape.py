"""HL7 v2 escape sequences (v2.5 section 2.7): checking them in outgoing
messages, and escaping or unescaping free text such as an ACK's MSA-3.

python-hl7's ``unescape`` is lenient by design: it logs and drops sequences it
does not know and never reports an unterminated one, so it cannot tell us
whether a message is well formed. The checks here are strict instead.
"""

from __future__ import annotations

import re
from functools import lru_cache

from daemon.hl7.delimiters import Delimiters

_HEX = "[0-9A-Fa-f]"
_FORMATTING = (
    r"\.(?:br|fi|nf|ce)"  # line break, fill on/off, centre
    r"|\.sp(?: ?\d+)?"  # skip lines
    r"|\.sk ?\d+"  # skip spaces
    r"|\.(?:in|ti) ?[+-]?\d+"  # indent, temporary indent
)


@lru_cache(maxsize=16)
def _sequence(d: Delimiters) -> re.Pattern[str]:
    """What may stand between two escape characters."""
    delimiters = d.field + d.component + d.repetition + d.escape + d.subcomponent
    not_delimiter = f"[^{re.escape(delimiters + (d.truncation or ''))}\r\n]"
    return re.compile(
        "[HNFSTRE]"  # highlight on/off and the delimiters themselves
        + ("|P" if d.truncation else "")  # the truncation character (v2.7)
        + f"|X(?:{_HEX}{_HEX})+"  # hexadecimal data
        + f"|C{_HEX}{{4}}"  # single-byte character set switch
        + f"|M{_HEX}{{4}}(?:{_HEX}{_HEX})?"  # multi-byte character set switch
        + f"|Z{not_delimiter}*"  # locally defined
        + f"|{_FORMATTING}"
    )


def escape_problem(value: str, d: Delimiters) -> str | None:
    """Why the escape sequences in one field value are malformed, or None if they are fine."""
    esc = d.escape
    start = value.find(esc)
    if start == -1:
        return None
    sequence = _sequence(d)
    while start != -1:
        end = value.find(esc, start + 1)
        if end == -1:
            return f"unterminated escape sequence {value[start : start + 12]!r}"
        body = value[start + 1 : end]
        if not body:
            return f"empty escape sequence {esc * 2!r}"
        if not sequence.fullmatch(body):
            return f"unknown or malformed escape sequence {value[start : end + 1]!r}"
        start = value.find(esc, end + 1)
    return None


def escape_text(text: str, d: Delimiters) -> str:
    """Free text made safe to put in one field."""
    esc = d.escape
    table = {
        esc: f"{esc}E{esc}",
        d.field: f"{esc}F{esc}",
        d.component: f"{esc}S{esc}",
        d.repetition: f"{esc}R{esc}",
        d.subcomponent: f"{esc}T{esc}",
        "\r": f"{esc}.br{esc}",
        "\n": f"{esc}.br{esc}",
    }
    if d.truncation:
        table[d.truncation] = f"{esc}P{esc}"
    return "".join(table.get(char, char) for char in text)


def unescape_text(text: str, d: Delimiters) -> str:
    """Readable text from a field: delimiter escapes and ``\\.br\\`` resolved, hex
    decoded as Latin-1 code points, anything else left as written."""
    esc = d.escape
    if esc not in text:
        return text
    table = {
        "E": esc,
        "F": d.field,
        "S": d.component,
        "R": d.repetition,
        "T": d.subcomponent,
        "P": d.truncation or "",
        ".br": "\n",
    }
    out: list[str] = []
    position = 0
    while True:
        start = text.find(esc, position)
        end = text.find(esc, start + 1) if start != -1 else -1
        if end == -1:
            out.append(text[position:])
            return "".join(out)
        out.append(text[position:start])
        body = text[start + 1 : end]
        if body in table:
            out.append(table[body])
        elif re.fullmatch(f"X(?:{_HEX}{_HEX})+", body):
            out.append(bytes.fromhex(body[1:]).decode("latin-1"))
        else:
            out.append(text[start : end + 1])
        position = end + 1
