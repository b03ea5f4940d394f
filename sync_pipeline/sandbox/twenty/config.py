"""Start-up configuration and run-time fault knobs of the stand-in.

Section numbers (§) refer to the Twenty API contract in docs/twenty-api.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

RATE_LIMIT_STYLES = ("2026", "2025", "legacy-400")  # §8.2 release lines
AUTH_STYLES = ("2025", "2026")  # §1


@dataclass
class FaultKnobs:
    """Everything tests may flip at run time through ``POST /_standin/faults``."""

    error_rate: float = 0.0  # probability of a random 500 per /rest request
    latency_seconds: float = 0.0  # extra delay before every /rest request
    fail_next: int = 0  # the next N /rest requests answer `fail_status`, nothing is written
    fail_status: int = 500
    fail_after_write_next: int = 0  # the next N writes are applied, then answered 500
    throttle_next: int = 0  # the next N /rest requests answer 429 (or the configured style)
    rate_limit_per_minute: int = 100  # §8.1 long bucket
    rate_limit_per_second: int = 100  # §8.1 short bucket
    rate_limit_style: str = "2026"
    auth_style: str = "2025"
    webhook_duplicates: int = 1  # each delivery sent N times (§9.7, twentyhq/twenty#6735)
    webhook_drop_rate: float = 0.0  # probability a delivery is silently lost
    webhook_delay_seconds: float = 0.0
    restored_as_deleted: bool = False  # §9.7: restore events named `{object}.deleted`

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial JSON update; unknown names and wrong types raise ValueError."""
        known = {f.name: f for f in dataclasses.fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown fault knob '{name}'; known: {', '.join(known)}")
            current = getattr(self, name)
            if isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"knob '{name}' expects a boolean")
            elif isinstance(current, int):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"knob '{name}' expects a non-negative integer")
            elif isinstance(current, float):
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ValueError(f"knob '{name}' expects a non-negative number")
                value = float(value)
            elif not isinstance(value, str):
                raise ValueError(f"knob '{name}' expects a string")
            if name == "rate_limit_style" and value not in RATE_LIMIT_STYLES:
                raise ValueError(f"rate_limit_style must be one of {', '.join(RATE_LIMIT_STYLES)}")
            if name == "auth_style" and value not in AUTH_STYLES:
                raise ValueError(f"auth_style must be one of {', '.join(AUTH_STYLES)}")
            if name.endswith("_rate") and value > 1:
                raise ValueError(f"knob '{name}' is a probability between 0 and 1")
            setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class StandinConfig:
    api_key: str
    api_key_name: str = "sync-bot"  # shows up in createdBy/updatedBy.name (§5.1)
    state_file: str | None = None
    page_size_max: int = 60  # §4.1 QUERY_MAX_RECORDS (200 in 2026 builds)
    batch_max: int = 60  # §5.2
    mutation_max_affected: int = 100  # §3 MUTATION_MAXIMUM_AFFECTED_RECORDS
    seed_companies: int = 0
    seed_people: int = 0
    seed_opportunities: int = 0
    workspace_id: str = "3b8e6458-5fc1-4e63-8563-008ccddaa6db"
    webhook_allow_any_host: bool = False  # by default only loopback targets receive deliveries
    faults: FaultKnobs = field(default_factory=FaultKnobs)
