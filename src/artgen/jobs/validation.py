"""The server's checks on a job request on top of the schema's: limits, prompts, models, webhook.

The one place a submission is validated (the route only parses; the engine keeps its invariants).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from artgen.config import Settings
from artgen.jobs.schemas import JobCreate
from artgen.jobs.webhooks import WebhookRefused, check_webhook


class InvalidJob(ValueError):
    """The request is well-formed but cannot run here (unknown model, too big ...): 422."""

    def __init__(self, field: str, message: str, details: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        # Every (field, message) found, the first being (field, message).
        self.details = list(details) or [(field, message)]


# C0 controls other than tab/newline/CR, DEL and C1 controls: never meaningful in a prompt.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def validate_request(
    settings: Settings, request: JobCreate, image_prompt_count: int, has_source: bool = False
) -> None:
    """The server's checks on top of the schema's (the one place; InvalidJob lists each problem).

    A job needs something to aim at: text prompts, image prompts or noise prompts.
    """
    problems = request.kind_problems(has_source=has_source, video=request.video)
    prompts = request.prompt_field
    texts = [(prompts, request.prompts), ("noise_prompts", request.noise_prompts)]
    texts += [(f"schedule.{i}.prompts", entry.prompts) for i, entry in enumerate(request.schedule)]
    texts += [
        (f"prompt_schedule.{i}.prompt", entry.prompt)
        for i, entry in enumerate(request.prompt_schedule or [])
    ]
    for field, text in texts:
        if field != "noise_prompts" and len(text) > settings.max_prompt_chars:
            problems.append((field, f"at most {settings.max_prompt_chars} characters"))
        if _CONTROL_CHARS.search(text):
            problems.append((field, "contains control characters (tabs and newlines are fine)"))
    if not (request.prompts.strip() or image_prompt_count or request.noise_prompts.strip()):
        problems.append((prompts, "must not be empty (or give image or noise prompts)"))
    for name in ("width", "height"):
        if getattr(request, name) > settings.max_size:
            problems.append((name, f"at most {settings.max_size} on this server"))
    if request.iterations > settings.max_iterations:
        problems.append(("iterations", f"at most {settings.max_iterations} on this server"))
    for name in ("image_prompt_weights", "image_prompt_stops"):
        values = getattr(request, name)
        if values and len(values) != image_prompt_count:
            what = name.rsplit("_", 1)[1]  # weights, stops
            problems.append((name, f"{len(values)} {what} for {image_prompt_count} image prompts"))
    if problems:
        raise InvalidJob(*problems[0], details=problems)
    _check_models(settings, request)
    _check_webhook(settings, request)


def _check_webhook(settings: Settings, request: JobCreate) -> None:
    """InvalidJob for a webhook this server will not call (resolved and checked now, and again
    before every delivery)."""
    if request.webhook is None:
        if request.webhook_events is not None:
            raise InvalidJob("webhook_events", "needs a `webhook` URL to call")
        return
    try:
        check_webhook(settings, request.webhook)
    except WebhookRefused as exc:
        raise InvalidJob("webhook", str(exc)) from None


def _check_models(settings: Settings, request: JobCreate) -> None:
    """InvalidJob for model names the catalog cannot build (nothing is loaded here)."""
    # The catalog imports torch: loaded only when a job is validated, not with the service.
    from artgen.models.catalog import Catalog, UnknownModel

    catalog = Catalog(settings.home)
    vqgan = request.model or settings.model
    clips = request.clip_models or settings.clip_models_for(request.model)
    try:
        catalog.validate(vqgan, clips)
    except UnknownModel as exc:
        field = "model" if vqgan not in catalog.vqgan_names() else "clip_models"
        raise InvalidJob(field, str(exc)) from None
