"""Secrets never leave the process: redaction for error messages and payload excerpts."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote

from psycopg.conninfo import conninfo_to_dict

_SECRET_KEY = re.compile(r"(pass(word)?|secret|token|api[_-]?key|authorization|credential|dsn)", re.I)
_URL_PASSWORD = re.compile(r"(\w+://[^:/@\s]+):[^@\s]+@")
_BEARER = re.compile(r"(bearer\s+)[A-Za-z0-9._~+/=-]+", re.I)
_KV_SECRET = re.compile(r"\b(password|passwd|secret|token|api_key|apikey)=\S+", re.I)
REDACTED = "***"
T = TypeVar("T")


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


# -- known secrets ---------------------------------------------------------------------------------------
# The patterns above guess at secrets by their shape; a driver's message need not have one (libpq quotes a
# malformed password bare: `invalid percent-encoded token: "pa%zzword"`). Where a secret is known, it is
# masked exactly, wherever it sits in the message.

# A URL's user info: libpq ends it at the first "@" (or "/"); the password may have meant the last "@".
_URL_USERINFO = (re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.-]*://([^@/]*)@"),
                 re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.-]*://(.*)@"))
_MIN_SECRET = 3
_DSN_PASSWORD = re.compile(r"(?:^|[\s?&])password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s&]+)", re.I)


def dsn_secrets(dsn: str | None) -> tuple[str, ...]:
    """The password a Postgres connection string carries, as written and percent-decoded, however
    malformed the string is (the parser gives up on exactly the passwords that then leak)."""
    if not dsn:
        return ()
    try:
        password, parsed = conninfo_to_dict(dsn).get("password"), True
    except Exception:  # noqa: BLE001 - a malformed string is the case the patterns below are for
        password, parsed = None, False
    patterns = _URL_USERINFO[:1] if parsed else _URL_USERINFO
    raw = [m.group(1).partition(":")[2] for pattern in patterns if (m := pattern.match(dsn))]
    if not parsed:
        raw += [m.group(1).strip("'") for m in _DSN_PASSWORD.finditer(dsn)]
        # A password holding an unencoded "@" or "/" is cut there by libpq, which quotes its tail as the
        # host or the database.
        raw += [part for r in raw for part in re.split(r"[@/?#]", r)]
    found = {str(password or ""), *raw, *map(unquote, raw)}
    # Shorter fragments cannot be masked without masking every word of the message.
    return tuple(sorted((s for s in found if len(s) >= _MIN_SECRET), key=len, reverse=True))


def redact_secret(text: str, *secrets: str | None) -> str:
    """`text` with every occurrence of each secret masked, the longest first (so that a secret holding
    another is masked whole)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def call_masked(call: Callable[[], T], *secrets: str | None) -> T:
    """`call()`; an exception it raises leaves with every secret masked in its message, its args and its
    `__cause__`/`__context__` chain. It is rewritten in place and re-raised, so callers catch what they always
    did; one whose message cannot be rewritten leaves as a copy, without the chain that holds the secret."""
    known = tuple(s for s in secrets if s)
    try:
        return call()
    except Exception as exc:
        if not known or _scrub_chain(exc, known):
            raise
        failure = exc
    # Raised outside the handler, so the copy does not carry the original as its context.
    message = redact_secret(str(failure), *known)
    try:
        replacement: Exception = type(failure)(message)
    except Exception:  # noqa: BLE001 - a type that takes other arguments
        replacement = failure
    if _shows(replacement, known):  # a message made of more than its arguments
        replacement = RuntimeError(f"{type(failure).__name__}: {message}")
    raise replacement.with_traceback(failure.__traceback__)


def _scrub_chain(exc: BaseException, secrets: tuple[str, ...]) -> bool:
    """Mask the secrets in every exception of the chain; whether none shows them any more."""
    clean = True
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        _scrub_one(current, secrets)
        clean = clean and not _shows(current, secrets)
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return clean


def _scrub_one(exc: BaseException, secrets: tuple[str, ...]) -> None:
    exc.args = tuple(_scrub_value(a, secrets) for a in exc.args)
    for name, value in list(vars(exc).items()):
        if isinstance(value, (str, bytes)):
            setattr(exc, name, _scrub_value(value, secrets))
    if isinstance(exc, OSError):
        for name in ("strerror", "filename", "filename2"):
            value = getattr(exc, name)
            if isinstance(value, str):
                setattr(exc, name, redact_secret(value, *secrets))
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        notes[:] = [redact_secret(str(n), *secrets) for n in notes]


def _scrub_value(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return redact_secret(value, *secrets)
    if isinstance(value, bytes):
        for secret in secrets:
            value = value.replace(secret.encode(), REDACTED.encode())
        return value
    if any(s in repr(value) for s in secrets):
        return redact_secret(repr(value), *secrets)
    return value


def _shows(exc: BaseException, secrets: tuple[str, ...]) -> bool:
    try:
        text = f"{exc}\n{exc!r}"
    except Exception:  # noqa: BLE001 - an exception that cannot even be shown shows nothing
        return False
    return any(s in text for s in secrets)
