"""Secrets never leave the process: redaction for error messages and payload excerpts."""

from __future__ import annotations

import re
from typing import Any

_SECRET_KEY = re.compile(r"(pass(word)?|secret|token|api[_-]?key|authorization|credential|dsn)", re.I)
_URL_PASSWORD = re.compile(r"(\w+://[^:/@\s]+):[^@\s]+@")
_BEARER = re.compile(r"(bearer\s+)[A-Za-z0-9._~+/=-]+", re.I)
_KV_SECRET = re.compile(r"\b(password|passwd|secret|token|api_key|apikey)=\S+", re.I)
REDACTED = "***"


def redact_text(text: str) -> str:
    text = _URL_PASSWORD.sub(rf"\1:{REDACTED}@", text)
    text = _BEARER.sub(rf"\1{REDACTED}", text)
    return _KV_SECRET.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


def redact(value: Any, max_chars: int = 2000) -> Any:
    """A JSON-safe excerpt of a payload with secret-looking keys masked and long strings cut."""
    if isinstance(value, dict):
        return {str(k): REDACTED if _SECRET_KEY.search(str(k)) else redact(v, max_chars)
                for k, v in list(value.items())[:50]}
    if isinstance(value, (list, tuple)):
        return [redact(v, max_chars) for v in list(value)[:20]]
    if isinstance(value, str):
        value = redact_text(value)
        return value if len(value) <= max_chars else value[:max_chars] + "…"
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(str(value), max_chars)
