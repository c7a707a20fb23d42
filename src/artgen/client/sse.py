"""Server-Sent Events: a line parser and the resume state that makes a dropped stream continue.

Pure (no I/O): the sync and async clients feed it lines and ask it what to send on reconnect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Our server asks for 1 s (`retry: 1000`); a hostile or odd value must not stall a client.
MAX_RECONNECT_DELAY_S = 5.0
DEFAULT_RECONNECT_DELAY_S = 1.0


@dataclass(frozen=True)
class ServerEvent:
    """One event of a job's stream: `progress`, `preview`, `status` or the final `done`."""

    id: int | None
    type: str
    data: dict[str, Any]


class SSEParser:
    """Feed it the stream's lines (without their newline); it returns an event at each blank line.

    Follows the EventSource rules: `:` starts a comment (our heartbeats), one space after the
    field's colon is dropped, several `data:` lines join with newlines, `retry:` sets the delay.
    """

    def __init__(self) -> None:
        self.retry_ms: int | None = None
        self._id: str | None = None
        self._type = ""
        self._data: list[str] = []

    def feed(self, line: str) -> ServerEvent | None:
        """Take one line; the finished event when it was the blank line that ends one."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> ServerEvent | None:
        data, event_type = self._data, self._type or "message"
        self._data, self._type = [], ""
        if not data:
            return None
        text = "\n".join(data)
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = {"text": text}
        if not isinstance(parsed, dict):
            parsed = {"value": parsed}
        event_id = int(self._id) if self._id is not None and self._id.isdigit() else None
        return ServerEvent(id=event_id, type=event_type, data=parsed)


class StreamResume:
    """Where a job's stream is: the last event id seen, and how to ask for the rest.

    Event ids increase, so an event at or below the last id (a server replaying) is dropped:
    across reconnections no event is lost (Last-Event-ID) and none is repeated.
    """

    def __init__(self, last_event_id: int | None = None, max_reconnects: int = 5) -> None:
        self.last_event_id = last_event_id
        self.max_reconnects = max_reconnects
        # Reconnections in a row that brought no new event.
        self.failures = 0
        self.done = False
        self.parser = SSEParser()

    def headers(self) -> dict[str, str]:
        """Request headers for the next connection."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = str(self.last_event_id)
        return headers

    def start_connection(self) -> None:
        """A new connection begins: a half-received event from the last one is thrown away."""
        retry_ms = self.parser.retry_ms
        self.parser = SSEParser()
        self.parser.retry_ms = retry_ms

    def feed(self, line: str) -> ServerEvent | None:
        """An event that is new, or None; marks the stream done at `done`."""
        event = self.parser.feed(line)
        if event is None:
            return None
        if event.id is not None:
            if self.last_event_id is not None and event.id <= self.last_event_id:
                return None
            self.last_event_id = event.id
        self.failures = 0
        if event.type == "done":
            self.done = True
        return event

    def next_delay(self) -> float | None:
        """Seconds to wait before reconnecting after the stream broke; None: give up."""
        self.failures += 1
        if self.failures > self.max_reconnects:
            return None
        retry_ms = self.parser.retry_ms
        delay = DEFAULT_RECONNECT_DELAY_S if retry_ms is None else retry_ms / 1000
        return min(delay, MAX_RECONNECT_DELAY_S)
