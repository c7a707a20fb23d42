"""Webhooks: signing, the host policy, one delivery over httpx, and the outbox deliverer thread.

A job with a `webhook` gets its public JSON POSTed at the events it asked for. Each POST carries
`Artgen-Event`, `Artgen-Delivery` (the same id on every retry: receivers de-duplicate on it) and
`Artgen-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`; `verify_signature`
checks one. Outbound requests are a security surface: only allowlisted hosts, only public
addresses (unless allowed), checked at submission and again before every attempt, the request
sent to the address that was checked, no redirects, bounded time and response size.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from artgen.config import Settings
from artgen.jobs.outbox import Delivery, Outbox
from artgen.jobs.store import JobStore

logger = logging.getLogger("artgen.jobs.webhooks")

SIGNATURE_HEADER = "Artgen-Signature"
DELIVERY_HEADER = "Artgen-Delivery"
EVENT_HEADER = "Artgen-Event"
ATTEMPT_HEADER = "Artgen-Attempt"
USER_AGENT = "artgen-webhooks/1"
# Receivers should refuse signatures older than this (replay); verify_signature's default.
DEFAULT_TOLERANCE_S = 300.0
# At most this much of a receiver's answer is read (the status is all that counts).
MAX_RESPONSE_BYTES = 64 * 1024
# The deliverer looks for due deliveries this often when it found none.
POLL_INTERVAL_S = 0.25
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookRefused(ValueError):
    """The URL may not be called; `retryable` when only the lookup failed (DNS may recover)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


# Signing


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The Artgen-Signature header value for body sent at timestamp (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes | str,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when header is a valid Artgen-Signature of body by secret, made within tolerance_s
    of now. Give the raw body bytes as received (not re-encoded JSON)."""
    raw = body.encode() if isinstance(body, str) else body
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, raw).rsplit("v1=", 1)[1]
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


# The host policy


def _kind_of(address: Address) -> str | None:
    """Why an address is refused (None: public)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if address.is_global else "non-public"


@dataclass(frozen=True)
class HostPolicy:
    """Which webhook URLs may be called: allowlisted host names, public addresses only."""

    allowed_hosts: tuple[str, ...]  # exact names, "*.suffix" (subdomains) or "*" (any host)
    allow_private: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> HostPolicy:
        """The policy of ARTGEN_WEBHOOK_ALLOWED_HOSTS and ARTGEN_WEBHOOK_ALLOW_PRIVATE."""
        hosts = tuple(host.lower().rstrip(".") for host in settings.webhook_allowed_hosts)
        return cls(hosts, settings.webhook_allow_private)

    def allows_host(self, host: str) -> bool:
        """Whether the host name is on the allowlist."""
        host = host.lower().rstrip(".")
        for allowed in self.allowed_hosts:
            if allowed == "*" or allowed == host:
                return True
            if allowed.startswith("*.") and host.endswith(allowed[1:]):
                return True
        return False

    def check(self, url: str) -> list[Address]:
        """The addresses to call for url, or WebhookRefused saying why it may not be called."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise WebhookRefused("must be an http:// or https:// URL")
        host = parts.hostname
        if not host:
            raise WebhookRefused("the URL has no host")
        if not self.allows_host(host):
            raise WebhookRefused(f"host {host!r} is not on this server's webhook allowlist")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise WebhookRefused("the URL's port is not a number from 0 to 65535") from None
        addresses = resolve(host, port)
        for address in addresses:
            kind = _kind_of(address)
            if kind is not None and not self.allow_private:
                raise WebhookRefused(
                    f"host {host!r} resolves to {address}, a {kind} address; this server calls "
                    "public addresses only"
                )
        return addresses


def resolve(host: str, port: int) -> list[Address]:
    """Every address host resolves to (an IP literal: itself); WebhookRefused(retryable) if none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise WebhookRefused(
            f"host {host!r} could not be resolved ({exc})", retryable=True
        ) from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    if not addresses:
        raise WebhookRefused(f"host {host!r} has no address", retryable=True)
    return addresses


# One delivery


def post(
    url: str,
    address: Address,
    headers: dict[str, str],
    body: bytes,
    timeout: float,
    verify: ssl.SSLContext | bool = True,
) -> int:
    """POST body to url at the checked address (no new lookup: DNS cannot swap it), without
    following redirects or a proxy; the status code. httpx errors propagate. verify: how TLS
    certificates are checked (httpx's default CA bundle)."""
    target = httpx.URL(url)
    pinned = target.copy_with(host=str(address))
    # TLS is still checked against the URL's host name (SNI and certificate).
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    headers = {**headers, "Host": target.netloc.decode("ascii")}
    limits = httpx.Timeout(timeout)
    with httpx.Client(
        timeout=limits, follow_redirects=False, trust_env=False, verify=verify
    ) as client:
        request = client.build_request(
            "POST", pinned, content=body, headers=headers, extensions=extensions
        )
        response = client.send(request, stream=True)
        try:
            read = 0
            for chunk in response.iter_raw():
                read += len(chunk)
                if read >= MAX_RESPONSE_BYTES:
                    break
        finally:
            response.close()
    return response.status_code


@dataclass(frozen=True)
class Outcome:
    """How one attempt went: delivered, failed (retry) or refused (never retried)."""

    delivered: bool
    error: str = ""
    final: bool = False


class Deliverer:
    """Sends the outbox's due deliveries from a background thread, retrying with backoff.

    Each job's deliveries go in order (a failing one holds back the later ones of its job);
    up to `webhook_concurrency` attempts (of different jobs) run at once, each in a pool thread,
    so a slow receiver holds up only its own job's deliveries. Progress deliveries of a job are sent
    at most once per `webhook_progress_seconds`.
    """

    def __init__(self, settings: Settings, store: JobStore) -> None:
        self.settings = settings
        self.outbox: Outbox = store.outbox
        self.policy = HostPolicy.from_settings(settings)
        secret = settings.webhook_secret
        self._secret = secret.get_secret_value() if secret is not None else ""
        # Deliveries by outcome: delivered, retried, failed (gave up), refused.
        self.counts: Counter[str] = Counter()
        self._progress_sent: dict[str, float] = {}  # job id -> when its last progress went
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        # job id -> (its delivery being attempted, the attempt): one per job, in order.
        self._in_flight: dict[str, tuple[Delivery, Future[Outcome]]] = {}

    def start(self) -> None:
        """Deliver in a daemon thread until stop()."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="artgen-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the attempts under way (pending deliveries stay in the outbox)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.settings.webhook_timeout_seconds * 2 + 5)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                logger.exception("webhooks: delivery pass failed (retrying)")
            if self._in_flight:
                futures = [future for _, future in self._in_flight.values()]
                wait(futures, timeout=POLL_INTERVAL_S, return_when=FIRST_COMPLETED)
            else:
                self._stop.wait(POLL_INTERVAL_S)
        self.run_once(wait_all=True, start_new=False)

    def run_once(
        self, now: float | None = None, *, wait_all: bool = False, start_new: bool = True
    ) -> int:
        """Record the attempts that finished, then start the due deliveries (the oldest of each
        job without one in flight) in the free slots; how many were started. wait_all: also
        wait for every attempt under way and record it."""
        self._record_finished()
        started = self._start_due(time.time() if now is None else now) if start_new else 0
        if wait_all:
            wait([future for _, future in self._in_flight.values()])
            self._record_finished()
        return started

    def _start_due(self, now: float) -> int:
        free = self.settings.webhook_concurrency - len(self._in_flight)
        if free <= 0:
            return 0
        interval = self.settings.webhook_progress_seconds
        self._progress_sent = {
            job: at for job, at in self._progress_sent.items() if now - at < interval
        }
        # Enough rows that the heads of jobs in flight or throttled cannot crowd out the others.
        limit = free + len(self._in_flight) + len(self._progress_sent)
        due = [
            delivery
            for delivery in self.outbox.due(now, limit=limit)
            if delivery.job_id not in self._in_flight
            and (delivery.event != "progress" or delivery.job_id not in self._progress_sent)
        ][:free]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.settings.webhook_concurrency, "artgen-webhook")
        for delivery in due:
            self._in_flight[delivery.job_id] = (delivery, self._pool.submit(self.attempt, delivery))
        return len(due)

    def _record_finished(self) -> None:
        for job_id, (delivery, future) in list(self._in_flight.items()):
            if not future.done():
                continue
            del self._in_flight[job_id]
            try:
                outcome = future.result()
            except Exception as exc:  # a bug, not the receiver: retried like a failure
                logger.exception("webhook %s: attempt failed", delivery.delivery_id)
                outcome = Outcome(False, f"internal error: {type(exc).__name__}")
            self._settle(delivery, outcome, time.time())

    def attempt(self, delivery: Delivery) -> Outcome:
        """One POST of the delivery, its URL checked again first (DNS may have changed)."""
        host = urlsplit(delivery.url).hostname
        try:
            addresses = self.policy.check(delivery.url)
        except WebhookRefused as exc:
            return Outcome(False, f"refused: {exc}", final=not exc.retryable)
        body = delivery.body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_HEADER: delivery.event,
            DELIVERY_HEADER: delivery.delivery_id,
            ATTEMPT_HEADER: str(delivery.tries + 1),
            SIGNATURE_HEADER: sign(self._secret, int(time.time()), body),
        }
        try:
            status = post(
                delivery.url, addresses[0], headers, body, self.settings.webhook_timeout_seconds
            )
        except httpx.HTTPError as exc:
            return Outcome(False, f"{type(exc).__name__} calling {host}: {exc}")
        if 200 <= status < 300:
            return Outcome(True)
        return Outcome(False, f"{host} answered HTTP {status}")

    def backoff(self, tries: int) -> float:
        """Seconds before the next attempt after `tries` failed ones (doubling, capped)."""
        base, cap = self.settings.webhook_backoff_seconds, self.settings.webhook_backoff_max_seconds
        return float(min(cap, base * 2 ** max(0, tries - 1)))

    def _settle(self, delivery: Delivery, outcome: Outcome, now: float) -> None:
        what = f"webhook {delivery.event} of job {delivery.job_id} ({delivery.delivery_id})"
        if outcome.delivered:
            # Counted before the row goes: once the outbox is empty the counts are final.
            self.counts["delivered"] += 1
            self.outbox.remove(delivery)
            if delivery.event == "progress":
                self._progress_sent[delivery.job_id] = now
            return
        tries = delivery.tries + 1
        if outcome.final:
            logger.warning("%s dropped: %s", what, outcome.error)
            self.outbox.remove(delivery)
            self.counts["refused"] += 1
        elif tries >= self.settings.webhook_max_attempts:
            logger.warning("%s given up after %d attempts: %s", what, tries, outcome.error)
            self.outbox.remove(delivery)
            self.counts["failed"] += 1
        else:
            delay = self.backoff(tries)
            logger.info("%s failed (%s); retry in %.1f s", what, outcome.error, delay)
            self.outbox.retry_later(delivery, now + delay, outcome.error)
            self.counts["retried"] += 1


def webhooks_enabled(settings: Settings) -> bool:
    """Webhooks are on when hosts are allowlisted (the settings then require a secret)."""
    return bool(settings.webhook_allowed_hosts)


def check_webhook(settings: Settings, url: str) -> None:
    """At submission: WebhookRefused saying why, for a webhook URL this server will not call."""
    if not webhooks_enabled(settings):
        raise WebhookRefused("webhooks are off on this server (no ARTGEN_WEBHOOK_ALLOWED_HOSTS)")
    HostPolicy.from_settings(settings).check(url)
