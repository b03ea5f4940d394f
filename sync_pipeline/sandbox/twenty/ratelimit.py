"""Per-workspace token buckets of §8.1 and the 429 / legacy-400 answers of §8.2.

Section numbers (§) refer to the Twenty API contract in docs/twenty-api.md.
"""

from __future__ import annotations

import math
import time

from .errors import ApiError


class TokenBucket:
    """Capacity ``limit``, continuous refill of ``limit / window`` tokens (throttler.service)."""

    def __init__(self, limit: int, window_seconds: float) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.tokens = float(limit)
        self.refilled_at = time.monotonic()

    def _refill(self, now: float) -> None:
        refill = (now - self.refilled_at) * self.limit / self.window_seconds
        self.tokens = min(self.limit, self.tokens + refill)
        self.refilled_at = now

    def try_consume(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def seconds_until_token(self, now: float) -> float:
        self._refill(now)
        return max(0.0, (1 - self.tokens) * self.window_seconds / self.limit)

    @property
    def remaining(self) -> int:
        return int(self.tokens)


class WorkspaceRateLimiter:
    """Short (per second) and long (per minute) buckets; both must admit a request."""

    def __init__(self, per_second: int, per_minute: int) -> None:
        self.short = TokenBucket(per_second, 1.0)
        self.long = TokenBucket(per_minute, 60.0)

    def check(self, style: str, spender_id: str) -> None:
        """Consume one token or raise the rate-limit error of the configured release ``style``."""
        now = time.monotonic()
        # §8.1: the short bucket is charged before the long one is checked.
        for bucket in (self.short, self.long):
            if not bucket.try_consume(now):
                raise rate_limit_error(style, bucket, spender_id, bucket.seconds_until_token(now))


def rate_limit_error(
    style: str, bucket: TokenBucket, spender_id: str, wait_seconds: float, forced: bool = False
) -> ApiError:
    """``forced``: injected by the ``throttle_next`` knob, so the bucket's real balance is not shown."""
    window_seconds = int(bucket.window_seconds)
    legacy_message = f"Limit reached ({bucket.limit} tokens per {window_seconds * 1000} ms)"
    if style == "legacy-400":
        return ApiError(400, "BadRequestException", legacy_message)
    if style == "2025":
        return ApiError(429, "HttpException", legacy_message)
    retry_after = max(1, math.ceil(wait_seconds))  # §8.2: never below 1
    remaining = 0 if forced else bucket.remaining
    return ApiError(
        429,
        "RATE_LIMITED",
        f"Rate limit exceeded for apiKey: {bucket.limit} requests per {window_seconds}s.",
        headers={
            "Retry-After": str(retry_after),
            "X-RateLimit-Limit": str(bucket.limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(math.ceil(time.time() + retry_after)),
        },
        extra={
            "limitKind": "speed",
            "scope": {"spenderType": "apiKey", "spenderId": spender_id},
            "limit": bucket.limit,
            "remaining": remaining,
            "periodCount": window_seconds,
            "periodUnit": "second",
            "retryAfterSeconds": retry_after,
        },
    )
