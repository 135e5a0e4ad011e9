"""The encrypted ``response`` field of BPJS Antrean data endpoints.

BPJS sends ``base64(AES-256-CBC(LZString.compressToEncodedURIComponent(json)))``:
the key is ``SHA-256(cons_id + secret + timestamp)`` (the ``X-timestamp`` the client
sent), the IV the key's first 16 bytes, the padding PKCS7. ``decrypt`` undoes every
layer; ``encrypt`` builds one, for the simulator and the tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from lzstring import LZString

_BLOCK_BITS = 128  # AES block size, for PKCS7
_IV_BYTES = 16


class DecryptError(ValueError):
    """A ``response`` that is not what BPJS encrypts; the text names the layer that
    failed (base64, AES, padding, LZ-string or JSON)."""


def response_key(cons_id: str, secret: str, timestamp: str) -> bytes:
    """The 32-byte AES key of the answers to a call sent at ``timestamp``."""
    return hashlib.sha256(f"{cons_id}{secret}{timestamp}".encode()).digest()


def seal(text: str, key: bytes) -> str:
    """The AES layer alone: ``text`` (already LZ-compressed) → base64 ciphertext."""
    padder = padding.PKCS7(_BLOCK_BITS).padder()
    padded = padder.update(text.encode("utf-8")) + padder.finalize()
    encryptor = _cipher(key).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")


def unseal(response: str, key: bytes) -> str:
    """The AES layer alone: base64 ciphertext → the LZ-compressed text inside."""
    try:
        data = base64.b64decode(response.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise DecryptError("response is not base64") from None
    if not data or len(data) % (_BLOCK_BITS // 8):
        raise DecryptError(f"response is {len(data)} bytes: not a whole number of AES blocks")
    decryptor = _cipher(key).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(_BLOCK_BITS).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise DecryptError("bad PKCS7 padding: wrong key (cons id, secret or timestamp)") from None
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptError("decrypted bytes are not UTF-8: wrong key?") from None


def encrypt(value: Any, cons_id: str, secret: str, timestamp: str) -> str:
    """``value`` as BPJS would send it in ``response`` to a call made at ``timestamp``."""
    # ASCII JSON: LZ-string works on UTF-16 code units in JavaScript and on code points
    # here, so escaping everything else keeps both sides in agreement.
    text = json.dumps(value, separators=(",", ":"))
    compressed = LZString.compressToEncodedURIComponent(text)
    return seal(compressed, response_key(cons_id, secret, timestamp))


def decrypt(response: Any, cons_id: str, secret: str, timestamp: str) -> Any:
    """The JSON value inside an encrypted ``response``; raises ``DecryptError``."""
    if not isinstance(response, str):
        raise DecryptError(f"response is a {type(response).__name__}, not an encrypted string")
    compressed = unseal(response, response_key(cons_id, secret, timestamp))
    try:
        text = LZString.decompressFromEncodedURIComponent(compressed)
    except (IndexError, KeyError, ValueError, TypeError):  # the library's ways of failing
        text = None
    if not text:
        raise DecryptError("decrypted text is not LZ-string (encoded URI component)")
    try:
        return json.loads(text)
    except ValueError:
        raise DecryptError("decompressed text is not JSON") from None


def _cipher(key: bytes) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(key), modes.CBC(key[:_IV_BYTES]))
