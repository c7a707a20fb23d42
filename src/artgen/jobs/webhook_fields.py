"""The webhook fields of a job request: `webhook` (a URL) and `webhook_events` (cog's names).

The URL's form is checked here; whether this server may call it (allowlist, address) is checked
by the service at submission (artgen.jobs.webhooks.check_webhook).
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

# completed = succeeded, failed or canceled.
WEBHOOK_EVENTS = ("start", "progress", "completed")
WEBHOOK_FIELDS = ("webhook", "webhook_events")
MAX_WEBHOOK_URL = 2048
WebhookEvent = Literal["start", "progress", "completed"]


class WebhookFields(BaseModel):
    """Mixed into JobCreate: where and when to POST the job's public JSON."""

    webhook: str | None = Field(
        None,
        max_length=MAX_WEBHOOK_URL,
        description="http(s) URL that receives the job's JSON (signed) at `webhook_events`",
    )
    webhook_events: list[WebhookEvent] | None = Field(
        None, description="when to call `webhook`; None: start, progress and completed"
    )

    @field_validator("webhook")
    @classmethod
    def _check_webhook_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 (raises ValueError for a bad port)
        except ValueError:
            raise ValueError("not a valid URL") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        if not parts.hostname:
            raise ValueError("the URL has no host")
        return value

    @field_validator("webhook_events")
    @classmethod
    def _check_webhook_events(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError(f"give at least one of {', '.join(WEBHOOK_EVENTS)}, or leave it out")
        return list(dict.fromkeys(value))

    def resolved_webhook_events(self) -> list[str]:
        """The events the webhook is called at (all three when none are given)."""
        return list(self.webhook_events or WEBHOOK_EVENTS)
