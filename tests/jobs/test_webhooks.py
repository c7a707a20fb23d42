"""Webhooks: signed deliveries to a loopback receiver, retries, the durable outbox, the policy."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from jobtools import tiny_request

from artgen.api.app import create_app
from artgen.api.schemas import JobPublic, public_json
from artgen.config import Settings
from artgen.jobs.schemas import Job, JobStatus, utcnow
from artgen.jobs.service import JobService
from artgen.jobs.store import JobStore
from artgen.jobs.webhooks import (
    Deliverer,
    HostPolicy,
    WebhookRefused,
    post,
    sign,
    verify_signature,
)
from support import free_port, make_settings, small_job, wait_for

SECRET = "test-webhook-secret"
LOOPBACK = "127.0.0.1"


class Receiver:
    """A loopback HTTP server that records every POST and answers with `answer(path)`."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answer: Callable[[str], tuple[int, dict[str, str]]] = lambda path: (200, {})
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers = receiver.answer(self.path)
                with receiver._lock:
                    receiver.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body,
                         "status": status}
                    )  # fmt: skip
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """The webhook URL that is recorded under path /hook."""
        return f"http://{LOOPBACK}:{self.server.server_address[1]}/hook"

    def received(self, event: str | None = None, status: int | None = None) -> list[dict]:
        """Requests so far (of one event / answered with one status)."""
        with self._lock:
            return [
                request
                for request in self.requests
                if (event is None or request["headers"]["Artgen-Event"] == event)
                and (status is None or request["status"] == status)
            ]

    def fail_first(self, count: int, status: int = 500) -> None:
        """Answer `status` to the next `count` requests, then 200."""
        answers = iter([status] * count)
        self.answer = lambda path: (next(answers, 200), {})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def webhook_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Webhooks on for the loopback receiver, with short backoffs."""
    values: dict[str, Any] = {
        "webhook_allowed_hosts": [LOOPBACK],
        "webhook_allow_private": True,
        "webhook_secret": SECRET,
        "webhook_backoff_seconds": 0.05,
        "webhook_backoff_max_seconds": 0.2,
        "webhook_progress_seconds": 0.0,
        "webhook_timeout_seconds": 10.0,
    }
    return make_settings(tmp_path, **{**values, **overrides})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """This module's settings (the service and worker fixtures of conftest.py use them)."""
    return webhook_settings(tmp_path, checkpoint_every=4, lease_seconds=5.0)


def assert_signed(request: dict[str, Any]) -> dict[str, Any]:
    """The request's signature verifies; its body as JSON (a JobPublic)."""
    assert verify_signature(SECRET, request["headers"]["Artgen-Signature"], request["body"])
    assert request["headers"]["Content-Type"] == "application/json"
    body = json.loads(request["body"])
    JobPublic.model_validate(body)
    return body


def stored_job(store: JobStore, url: str, events: list[str]) -> Job:
    """A queued job with a webhook, inserted directly into the store."""
    job = Job(
        id=str(uuid.uuid4()),
        params={"prompts": "x"},
        iterations=4,
        webhook=url,
        webhook_events=events,
    )
    store.create(job)
    return job


def finish(store: JobStore, job: Job) -> None:
    def mutate(current: Job) -> list:
        current.status, current.finished_at = JobStatus.succeeded, utcnow()
        return [("status", {"status": "succeeded"})]

    store.update(job.id, mutate)


def sent(receiver: Receiver) -> list[tuple[str, str]]:
    """(job id, event) of every request the receiver got, in order."""
    return [
        (json.loads(r["body"])["id"], r["headers"]["Artgen-Event"]) for r in receiver.received()
    ]


# Signing


def test_a_signature_verifies_and_a_tampered_body_an_old_one_or_another_secret_do_not():
    body = b'{"id": "1", "status": "succeeded"}'
    now = int(time.time())
    header = sign(SECRET, now, body)
    assert header.startswith(f"t={now},v1=")
    assert verify_signature(SECRET, header, body)
    assert verify_signature(SECRET, header, body.decode())
    assert not verify_signature(SECRET, header, body.replace(b"succeeded", b"failed"))
    assert not verify_signature("another secret", header, body)
    old = sign(SECRET, now - 600, body)
    assert not verify_signature(SECRET, old, body, tolerance_s=300)
    assert verify_signature(SECRET, old, body, tolerance_s=900)
    for broken in ("", "t=abc,v1=00", f"t={now}", "v1=" + header.rsplit("v1=", 1)[1]):
        assert not verify_signature(SECRET, broken, body)


def test_a_receiver_can_verify_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"  # `import torch` now raises ImportError
        "from artgen.jobs.webhooks import sign, verify_signature\n"
        "assert verify_signature('s', sign('s', 1000, b'{}'), b'{}', now=1000)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# The host policy


def test_the_policy_allows_listed_hosts_and_public_addresses_only():
    policy = HostPolicy(("hooks.example.com", "*.example.org", "127.0.0.1", "::1", "10.1.2.3"))
    assert policy.allows_host("HOOKS.example.com.")
    assert policy.allows_host("a.b.example.org")
    assert not policy.allows_host("example.org")  # *.suffix: subdomains only
    assert not policy.allows_host("evil-example.org")
    assert not policy.allows_host("hooks.example.com.evil.net")
    assert HostPolicy(("*",)).allows_host("anything.net")
    with pytest.raises(WebhookRefused, match="allowlist"):
        policy.check("https://evil.net/hook")
    for url, kind in [
        ("http://127.0.0.1:9/hook", "loopback"),
        ("http://[::1]:9/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
    ]:
        with pytest.raises(WebhookRefused, match=kind):
            policy.check(url)
    everywhere = HostPolicy(("*",))
    for address, kind in [
        ("169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("192.168.0.1", "private"),
    ]:
        with pytest.raises(WebhookRefused, match=kind):
            everywhere.check(f"http://{address}/hook")
    with pytest.raises(WebhookRefused, match="http"):
        everywhere.check("ftp://8.8.8.8/hook")
    assert [str(a) for a in everywhere.check("https://8.8.8.8/hook")] == ["8.8.8.8"]
    private_ok = HostPolicy((LOOPBACK,), allow_private=True)
    assert [str(a) for a in private_ok.check("http://127.0.0.1:9/hook")] == [LOOPBACK]


def _self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """A certificate for host (its own CA) and its key, as PEM files."""
    pytest.importorskip("cryptography")  # not a dependency of artgen: skipped without it
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = utcnow()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now.replace(year=now.year + 1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_https_goes_to_the_checked_address_and_verifies_the_urls_host_name(tmp_path):
    cert_file, key_file = _self_signed(tmp_path, "hooks.test")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_file, key_file)
    receiver = Receiver(tls=server_tls)
    trust = ssl.create_default_context(cafile=str(cert_file))
    port = receiver.server.server_address[1]
    loopback = ipaddress.ip_address(LOOPBACK)
    try:
        # hooks.test resolves nowhere: the request reaches the server only through the address.
        url = f"https://hooks.test:{port}/hook"
        assert post(url, loopback, {}, b"{}", timeout=10, verify=trust) == 200
        assert receiver.received()[0]["headers"]["Host"] == f"hooks.test:{port}"
        # The same address under another name: the certificate does not match, nothing is sent.
        with pytest.raises(httpx.ConnectError):
            post(f"https://other.test:{port}/hook", loopback, {}, b"{}", timeout=10, verify=trust)
        assert len(receiver.received()) == 1
    finally:
        receiver.close()


def test_webhooks_need_a_secret_when_hosts_are_allowed(tmp_path):
    with pytest.raises(ValueError, match="ARTGEN_WEBHOOK_SECRET"):
        Settings(data_dir=tmp_path, webhook_allowed_hosts="hooks.example.com")
    listed = Settings(data_dir=tmp_path, webhook_allowed_hosts="a.com, *.b.org", webhook_secret="s")
    assert listed.webhook_allowed_hosts == ["a.com", "*.b.org"]


@pytest.mark.parametrize(
    ("overrides", "body", "field", "says"),
    [
        ({}, {"webhook": "https://evil.net/hook"}, "webhook", "allowlist"),
        ({"webhook_allow_private": False}, {"webhook": "http://127.0.0.1:9/h"}, "webhook", "loop"),
        ({}, {"webhook": "ftp://127.0.0.1/hook"}, "webhook", "http"),
        (
            {},
            {"webhook": "http://127.0.0.1:9/h", "webhook_events": ["done"]},
            "webhook_events.0",
            "start",
        ),
        ({}, {"webhook_events": ["start"]}, "webhook_events", "webhook"),
        ({"webhook_allowed_hosts": []}, {"webhook": "http://127.0.0.1:9/h"}, "webhook", "off"),
    ],
)
def test_a_refused_webhook_gets_a_422_naming_the_field_and_nothing_is_stored(
    tmp_path, overrides, body, field, says
):
    settings = webhook_settings(tmp_path, worker=False, **overrides)
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/jobs", json={**small_job(), **body})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert field in {error.get("field")} | {d["field"] for d in error["details"]}, error
        assert says in error["message"], error
        assert client.get("/v1/jobs").json()["total"] == 0
        if settings.webhook_allowed_hosts:
            metrics = client.get("/metrics").text
            assert 'artgen_webhook_deliveries_total{outcome="delivered"} 0.0' in metrics
    assert not any((settings.data_dir / "jobs").iterdir())


# The outbox


def test_outbox_rows_are_written_with_the_change_that_causes_them(tmp_path):
    store = JobStore(tmp_path / "data", public_json)
    try:
        job = stored_job(store, "http://127.0.0.1:9/hook", ["start", "progress", "completed"])
        quiet = stored_job(store, "http://127.0.0.1:9/hook", ["completed"])
        assert store.outbox.pending() == []

        def progress(iteration: int) -> Callable[[Job], list]:
            def mutate(current: Job) -> list:
                if current.status == JobStatus.queued:
                    current.status, current.started_at = JobStatus.running, utcnow()
                current.iteration = iteration
                return [("progress", {"iteration": iteration})]

            return mutate

        for target in (job, quiet):
            store.update(target.id, progress(1))
        assert [d.event for d in store.outbox.pending(job.id)] == ["start", "progress"]
        assert store.outbox.pending(quiet.id) == []
        # A newer progress replaces the one not tried yet: the receiver gets the newest snapshot.
        store.update(job.id, progress(2))
        pending = store.outbox.pending(job.id)
        assert [d.event for d in pending] == ["start", "progress"]
        assert json.loads(pending[1].body)["iteration"] == 2
        assert json.loads(pending[0].body)["status"] == "running"

        for target in (job, quiet):
            finish(store, target)
        pending = store.outbox.pending(job.id)
        assert [d.event for d in pending] == ["start", "completed"]
        assert json.loads(pending[1].body)["status"] == "succeeded"
        assert "webhook" not in json.loads(pending[1].body)  # the URL is not in the public JSON
        assert [d.event for d in store.outbox.pending(quiet.id)] == ["completed"]
        assert len({d.delivery_id for d in store.outbox.pending()}) == 3

        # Deleting a job keeps the deliveries it already owes (their bodies were snapshotted).
        store.delete(job.id)
        assert [d.event for d in store.outbox.pending(job.id)] == ["start", "completed"]
    finally:
        store.close()


def test_a_receiver_failing_twice_gets_the_third_try_with_the_same_delivery_id(settings, receiver):
    store = JobStore(settings.data_dir, public_json)
    deliverer = Deliverer(settings, store)
    receiver.fail_first(2)
    try:
        job = stored_job(store, receiver.url, ["completed"])
        finish(store, job)
        deliverer.start()
        wait_for(lambda: deliverer.counts["delivered"] == 1, timeout=60)
        requests = receiver.received()
        assert [r["status"] for r in requests] == [500, 500, 200]
        assert len({r["headers"]["Artgen-Delivery"] for r in requests}) == 1
        assert [r["headers"]["Artgen-Attempt"] for r in requests] == ["1", "2", "3"]
        for request in requests:
            assert assert_signed(request)["id"] == job.id
        assert deliverer.counts["retried"] == 2
        assert store.outbox.pending() == []
    finally:
        deliverer.stop()
        store.close()


def test_redirects_are_not_followed_and_a_delivery_is_given_up_after_max_attempts(
    tmp_path, receiver
):
    settings = webhook_settings(tmp_path, webhook_max_attempts=2)
    store = JobStore(settings.data_dir, public_json)
    deliverer = Deliverer(settings, store)
    receiver.answer = lambda path: (302, {"Location": "/elsewhere"})
    try:
        finish(store, stored_job(store, receiver.url, ["completed"]))
        deliverer.start()
        wait_for(lambda: deliverer.counts["failed"] == 1, timeout=60)
        assert [r["path"] for r in receiver.received()] == ["/hook", "/hook"]
        assert store.outbox.pending() == []
    finally:
        deliverer.stop()
        store.close()


def test_a_slow_receiver_holds_up_only_its_own_jobs_deliveries(settings, receiver):
    store = JobStore(settings.data_dir, public_json)
    deliverer = Deliverer(settings, store)
    release = threading.Event()

    def answer(path: str) -> tuple[int, dict[str, str]]:
        if path == "/slow":
            release.wait(60)
        return 200, {}

    receiver.answer = answer
    try:
        slow = stored_job(store, receiver.url.replace("/hook", "/slow"), ["completed"])
        finish(store, slow)
        finish(store, stored_job(store, receiver.url, ["completed"]))
        deliverer.start()
        wait_for(lambda: deliverer.counts["delivered"] == 1, timeout=60)
        assert [r["path"] for r in receiver.received()] == ["/hook"]
        assert [d.job_id for d in store.outbox.pending()] == [slow.id]  # still being answered
        release.set()
        wait_for(lambda: deliverer.counts["delivered"] == 2, timeout=60)
    finally:
        release.set()
        deliverer.stop()
        store.close()


def test_progress_is_sent_at_most_once_per_interval_without_holding_up_other_jobs(
    tmp_path, receiver
):
    settings = webhook_settings(tmp_path, webhook_progress_seconds=3600, webhook_concurrency=1)
    store = JobStore(settings.data_dir, public_json)
    deliverer = Deliverer(settings, store)

    def progress(current: Job) -> list:
        current.status, current.iteration = JobStatus.running, current.iteration + 1
        return [("progress", {"iteration": current.iteration})]

    try:
        busy = stored_job(store, receiver.url, ["progress", "completed"])
        store.update(busy.id, progress)
        assert deliverer.run_once(wait_all=True) == 1
        store.update(busy.id, progress)  # within the interval: waits, and holds up no other job
        done = stored_job(store, receiver.url, ["completed"])
        finish(store, done)
        assert deliverer.run_once(wait_all=True) == 1
        assert deliverer.run_once(wait_all=True) == 0
        assert sent(receiver) == [(busy.id, "progress"), (done.id, "completed")]
        # The completion replaces the progress still waiting and goes at once.
        finish(store, busy)
        assert deliverer.run_once(wait_all=True) == 1
        assert sent(receiver)[2:] == [(busy.id, "completed")]
        assert store.outbox.pending() == []
    finally:
        deliverer.stop()
        store.close()


def test_the_policy_is_checked_again_at_delivery(tmp_path, receiver):
    submitted = webhook_settings(tmp_path)
    store = JobStore(submitted.data_dir, public_json)
    # The server restarted without ARTGEN_WEBHOOK_ALLOW_PRIVATE: the loopback URL is refused.
    deliverer = Deliverer(submitted.model_copy(update={"webhook_allow_private": False}), store)
    try:
        finish(store, stored_job(store, receiver.url, ["completed"]))
        assert deliverer.run_once(wait_all=True) == 1
        assert deliverer.counts["refused"] == 1
        assert receiver.received() == []
        assert store.outbox.pending() == []
    finally:
        deliverer.stop()
        store.close()


# End to end


@pytest.mark.timeout(240)
def test_a_job_posts_start_progress_and_completed_signed(
    service: JobService, start_worker: Callable[[], Any], receiver: Receiver
):
    start_worker()
    # Long enough to still run when the first progress arrives; canceled then.
    request = tiny_request(iterations=5000, webhook=receiver.url)
    job, _ = service.submit(request)
    wait_for(lambda: receiver.received("progress"), timeout=120)
    service.cancel(job.id)
    wait_for(lambda: receiver.received("completed"), timeout=120)
    wait_for(lambda: not service.store.outbox.pending(), timeout=60)

    # At least once: an attempt that timed out on a loaded machine may have arrived too, so
    # de-duplicate on the delivery id as a receiver does.
    requests = list({r["headers"]["Artgen-Delivery"]: r for r in receiver.received()}.values())
    events = [r["headers"]["Artgen-Event"] for r in requests]
    assert events[0] == "start" and events[-1] == "completed", events
    assert set(events) == {"start", "progress", "completed"}
    assert events.count("start") == events.count("completed") == 1
    bodies = [assert_signed(r) for r in requests]
    assert {body["id"] for body in bodies} == {job.id}
    assert bodies[0]["status"] == "running"
    progress = [b["iteration"] for b, e in zip(bodies, events, strict=True) if e == "progress"]
    # The first progress may be the attempt's iteration-0 report (a loaded machine).
    assert progress == sorted(progress) and progress[0] >= 0
    assert bodies[-1]["status"] == "canceled"
    assert "webhook" not in bodies[-1]["params"]
    assert service.webhooks is not None and service.webhooks.counts["delivered"] == len(requests)


SERVER = """
import sys
from pathlib import Path
from artgen.api.server import serve
from artgen.config import Settings
data_dir, home, port = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
serve(Settings(model="tiny", device="cpu", data_dir=data_dir, home=home, port=port,
               webhook_allowed_hosts=["127.0.0.1"], webhook_allow_private=True,
               webhook_secret=sys.argv[4], webhook_backoff_seconds=0.2,
               webhook_backoff_max_seconds=0.5, webhook_max_attempts=100000))
"""


def _start_server(tmp_path: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / f"server-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
    arguments = [str(tmp_path / "data"), str(tmp_path / "home"), str(port), SECRET]
    return subprocess.Popen(
        [sys.executable, "-c", SERVER, *arguments], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def _wait_ready(base: str, process: subprocess.Popen) -> None:
    def ready() -> bool:
        assert process.poll() is None, "server exited early"
        try:
            return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout=120, interval=0.2)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.timeout(300)
def test_a_delivery_pending_when_the_server_is_killed_is_delivered_after_a_restart(
    tmp_path, receiver
):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    receiver.answer = lambda path: (503, {})
    process = _start_server(tmp_path, port)
    try:
        _wait_ready(base, process)
        body = small_job(webhook=receiver.url, webhook_events=["completed"])
        response = httpx.post(f"{base}/v1/jobs", json=body, timeout=10)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        wait_for(lambda: receiver.received("completed"), timeout=120)
        process.kill()
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    failed = receiver.received("completed")
    delivery_ids = {request["headers"]["Artgen-Delivery"] for request in failed}
    assert len(delivery_ids) == 1
    store = JobStore(tmp_path / "data", public_json)
    try:
        pending = store.outbox.pending(job_id)
        assert [d.delivery_id for d in pending] == list(delivery_ids)
    finally:
        store.close()

    receiver.answer = lambda path: (200, {})
    process = _start_server(tmp_path, port)
    try:
        delivered = wait_for(lambda: receiver.received("completed", status=200), timeout=120)
        assert [r["headers"]["Artgen-Delivery"] for r in delivered] == list(delivery_ids)
        body = assert_signed(delivered[0])
        assert body["id"] == job_id and body["status"] == "succeeded"
    finally:
        _stop(process)
    store = JobStore(tmp_path / "data", public_json)
    try:
        assert store.outbox.pending() == []
    finally:
        store.close()
