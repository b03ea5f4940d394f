"""Twenty's webhook signature (§9.3 of docs/twenty-api.md).

`X-Twenty-Webhook-Signature` is the lower-case hex HMAC-SHA256, keyed with the webhook secret, of
`"{X-Twenty-Webhook-Timestamp}:{raw body}"`; the timestamp is in milliseconds since the epoch. The
nonce header is not signed, so it cannot be relied on.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Twenty-Webhook-Timestamp"
SIGNATURE_HEADER = "X-Twenty-Webhook-Signature"


class SignatureError(Exception):
    """The request is not provably from Twenty (missing, stale or wrong signature)."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    tolerance_seconds: float,
    now: float | None = None,
) -> None:
    """Raise SignatureError unless `signature` signs `body` at a timestamp within the tolerance.

    The signature is checked over the raw bytes received, never a re-serialisation, and compared in
    constant time.
    """
    if not timestamp or not signature:
        raise SignatureError("missing signature headers")
    if not timestamp.isdigit():
        raise SignatureError("malformed timestamp")
    now_ms = (time.time() if now is None else now) * 1000
    if abs(now_ms - int(timestamp)) > tolerance_seconds * 1000:
        raise SignatureError("timestamp outside the tolerance window")
    expected = sign(secret, timestamp, body).encode()
    if not hmac.compare_digest(expected, signature.strip().lower().encode("utf-8", "replace")):
        raise SignatureError("signature mismatch")
