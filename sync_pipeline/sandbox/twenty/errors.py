"""REST error envelope of docs/twenty-api.md §2.1: ``{"statusCode", "error", "messages": [one string]}``."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answered with the Twenty REST envelope (plus optional headers / extra body keys)."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        return {"statusCode": self.status, "error": self.error, "messages": [self.message], **self.extra}


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequestException", message)


def not_found(message: str = "Record not found") -> ApiError:
    return ApiError(404, "NotFoundException", message)


DUPLICATE_ENTRY = "A duplicate entry was detected"
