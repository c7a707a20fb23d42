"""The models' user-facing errors, torch-free so that the CLI can catch them without importing
torch (artgen.models.checkpoints raises them and re-exports them)."""

from __future__ import annotations


class CheckpointError(RuntimeError):
    """A checkpoint or config file that cannot be used; the message names the file and why."""


class ModelUnavailable(RuntimeError):
    """A model whose files are missing or cannot be fetched; the message says how to get them.

    `public_message` says the same for a service's clients: the model and the command, no path.
    """

    def __init__(self, message: str, *, public_message: str | None = None) -> None:
        super().__init__(message)
        self.public_message = public_message
