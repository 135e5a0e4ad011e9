"""MLLP framing (HL7 v2 minimal lower layer protocol), without I/O:
``0x0B <message> 0x1C 0x0D``.

Between frames a peer may only send whitespace (some send a stray CR or LF
after each frame); the decoder skips it and counts it in ``skipped``. Any other
byte outside a frame means the stream cannot be trusted (a half frame, another
protocol), so it raises ``FramingError`` and the caller drops the connection.
"""

from __future__ import annotations

START = b"\x0b"
END = b"\x1c\r"
_START, _END, _CR = 0x0B, 0x1C, 0x0D
_WHITESPACE = b" \t\r\n"


class FramingError(ValueError):
    """The byte stream is not MLLP frames."""


def frame(message: bytes) -> bytes:
    return START + message + END


class FrameDecoder:
    """Splits a byte stream into frame contents; ``max_size`` bounds a frame."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.skipped = 0  # whitespace bytes seen outside frames
        self._buffer = bytearray()
        self._in_frame = False
        self._scanned = 0  # bytes of the current frame already searched for 0x1C

    @property
    def pending(self) -> int:
        """Bytes held that do not make a whole frame yet (0 between frames)."""
        return len(self._buffer) + (1 if self._in_frame else 0)

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def whole(self, data: bytes) -> bytes | None:
        """The content of ``data`` when nothing is buffered and ``data`` is exactly
        one clean frame (the usual shape of an answer); else None, and ``data``
        is left for ``feed``. Checks what ``next_frame`` would check."""
        if (
            self._buffer
            or self._in_frame
            or data[:1] != START
            or not data.endswith(END)
            or len(data) - 3 > self.max_size
        ):
            return None
        if data.find(b"\x1c", 1) != len(data) - 2 or data.find(b"\x0b", 1) != -1:
            return None
        return data[1:-2]

    def next_frame(self) -> bytes | None:
        """The next whole frame's content, or None until more bytes are fed."""
        buffer = self._buffer
        if not self._in_frame:
            start = buffer.find(_START)
            stray = buffer if start == -1 else buffer[:start]
            if stray:
                if stray.strip(_WHITESPACE):
                    shown = bytes(stray[:32])
                    raise FramingError(f"{len(stray)} byte(s) outside an MLLP frame: {shown!r}")
                self.skipped += len(stray)
            if start == -1:
                buffer.clear()
                return None
            del buffer[: start + 1]
            self._in_frame = True
            self._scanned = 0
        end = buffer.find(_END, self._scanned)
        if end == -1 or end > self.max_size:
            if len(buffer) > self.max_size:
                raise FramingError(f"MLLP frame larger than {self.max_size} bytes")
            self._scanned = len(buffer)
            return None
        if end + 1 == len(buffer):  # the 0x0D that must follow has not arrived yet
            self._scanned = end
            return None
        if buffer[end + 1] != _CR:
            raise FramingError(f"0x1C not followed by 0x0D but by 0x{buffer[end + 1]:02X}")
        if buffer.find(_START, 0, end) != -1:
            raise FramingError("a start byte 0x0B inside an MLLP frame")
        content = bytes(buffer[:end])
        del buffer[: end + 2]
        self._in_frame = False
        return content
