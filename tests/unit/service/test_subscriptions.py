"""Push delivery's pure parts: Standard Webhooks signatures (checked by the `standardwebhooks` package's verifier,
the receiver side every library implements), the spec read from a manifest, the sink guard, the retry schedule
and the status."""

from __future__ import annotations

import base64
import ipaddress
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from userservice.domain import subscriptions as subs
from userservice.domain.events import Cursor, StartAt
from userservice.signing import BadSigningKey, headers, parse_keys

KEY = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OTHER = "whsec_" + base64.b64encode(bytes(range(1, 33))).decode()


@given(st.text(max_size=2048), st.uuids())
def test_the_reference_verifier_accepts_every_signature(text: str, message_id: object) -> None:
    """Bodies are JSON, so UTF-8: the reference verifier decodes the body as such before it checks it."""
    now = int(datetime.now(UTC).timestamp())
    body = text.encode()
    signed = headers(parse_keys(KEY), str(message_id), now, body)
    Webhook(KEY).verify(body, signed, json_parse=False)
    assert signed["webhook-id"] == str(message_id) and signed["webhook-timestamp"] == str(now)


def test_a_changed_body_id_or_key_fails_verification() -> None:
    now = int(datetime.now(UTC).timestamp())
    signed = headers(parse_keys(KEY), "msg_1", now, b'{"a":1}')
    with pytest.raises(WebhookVerificationError):
        Webhook(KEY).verify(b'{"a":2}', signed)
    with pytest.raises(WebhookVerificationError):
        Webhook(KEY).verify(b'{"a":1}', {**signed, "webhook-id": "msg_2"})
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(b'{"a":1}', signed)


def test_during_rotation_both_keys_sign_and_either_verifies() -> None:
    now = int(datetime.now(UTC).timestamp())
    signed = headers(parse_keys(f"{KEY} {OTHER}"), "msg_1", now, b"{}")
    assert len(signed["webhook-signature"].split(" ")) == 2
    Webhook(KEY).verify(b"{}", signed)
    Webhook(OTHER).verify(b"{}", signed)


def test_unpadded_keys_read_as_the_reference_reads_them() -> None:
    unpadded = KEY.rstrip("=")
    assert parse_keys(unpadded) == parse_keys(KEY)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("secret", "does not start with whsec_"),
        ("whsec_!!!", "not base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "at least 24"),
        (f"{KEY} nope", "key 2 does not start"),
    ],
)
def test_bad_keys_are_refused_without_echoing_them(text: str, message: str) -> None:
    with pytest.raises(BadSigningKey, match=message) as caught:
        parse_keys(text)
    assert KEY[6:] not in str(caught.value)


def manifest(**spec: object) -> dict[str, object]:
    return {
        "metadata": {"namespace": "team", "name": "mail", "uid": "u-1", "generation": 3},
        "spec": {
            "userService": "users",
            "sink": {"ref": {"name": "mailer", "port": 8080, "path": "/hooks"}},
            "signingSecretRef": {"name": "hook-key", "key": "key"},
            **spec,
        },
    }


def test_a_service_reference_is_its_cluster_dns_name() -> None:
    sub = subs.from_manifest(manifest())
    assert sub.url == "http://mailer.team.svc:8080/hooks"
    assert sub.start_at is StartAt.NOW and sub.types is None and sub.wants("anything")
    assert (sub.namespace, sub.name, sub.uid, sub.generation) == ("team", "mail", "u-1", 3)


def test_uri_types_start_and_delivery_are_read() -> None:
    sub = subs.from_manifest(
        manifest(
            sink={"uri": "https://hooks.example/in", "allowOutsideCluster": True},
            types=["io.userservice.user.created.v1"],
            startAt="12-3",
            delivery={
                "timeoutSeconds": 2,
                "minBackoffSeconds": 0.5,
                "maxBackoffSeconds": 9,
                "maxInFlight": 4,
            },
        )
    )
    assert sub.url == "https://hooks.example/in" and sub.allow_outside_cluster
    assert sub.wants("io.userservice.user.created.v1") and not sub.wants("io.userservice.user.updated.v1")
    assert sub.start_at == Cursor(12, 3)
    assert sub.delivery == subs.Delivery(2.0, 0.5, 9.0, 4)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"sink": {"uri": "ftp://x/"}}, "http:// or https://"),
        ({"types": ["io.userservice.user.nope.v1"]}, "unknown types"),
        ({"signingSecretRef": {"name": "k"}}, "signingSecretRef.key is missing"),
    ],
)
def test_a_broken_manifest_names_its_field(spec: dict[str, object], message: str) -> None:
    with pytest.raises(subs.BadSubscription, match=message):
        subs.from_manifest(manifest(**spec))


def test_shown_url_drops_credentials_and_query() -> None:
    assert subs.shown_url("https://user:pw@hooks.example:8443/in?token=t") == "https://hooks.example:8443/in"


CLUSTER = subs.parse_networks("10.0.0.0/8, fd00::/8")


@pytest.mark.parametrize(
    ("address", "outside", "allowed"),
    [
        ("10.96.0.12", False, True),  # a ClusterIP
        ("fd00::5", False, True),
        ("::ffff:10.1.2.3", False, True),  # IPv4-mapped: judged as the IPv4 address
        ("93.184.216.34", False, False),  # public, not opted in
        ("93.184.216.34", True, True),
        ("127.0.0.1", True, False),  # loopback: never
        ("::1", True, False),
        ("169.254.169.254", True, False),  # cloud metadata (link-local): never
        ("192.168.1.1", True, False),  # private, but not the cluster's
        ("0.0.0.0", True, False),
        ("224.0.0.1", True, False),
    ],
)
def test_sink_guard(address: str, outside: bool, allowed: bool) -> None:
    assert (subs.address_refused(ipaddress.ip_address(address), CLUSTER, outside) is None) is allowed


@given(st.integers(min_value=1, max_value=10_000), st.integers(min_value=0, max_value=2**32))
def test_backoff_stays_within_its_bounds_and_grows(attempt: int, seed: int) -> None:
    rng = random.Random(seed)
    delay = subs.backoff(attempt, 0.5, 60, rng)
    assert 0.5 <= delay <= 60
    step = min(60, 0.5 * 2.0 ** min(attempt - 1, 62))
    assert delay >= step / 2


def test_retry_after_seconds_and_dates_within_bounds() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert subs.retry_after("3", now, 1, 60) == 3
    assert subs.retry_after("9999", now, 1, 60) == 60
    assert subs.retry_after("0", now, 1, 60) == 1
    date = (now + timedelta(seconds=20)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert subs.retry_after(date, now, 1, 60) == 20
    assert subs.retry_after("soon", now, 1, 60) is None
    assert subs.retry_after(None, now, 1, 60) is None


def progress(**changes: object) -> subs.Progress:
    base = subs.Progress(Cursor(5, 1), 0, 0.0, None, 10, 0, 0, None, None)
    return subs.Progress(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def test_ready_follows_the_last_failure_then_expiry_until_the_spec_changes() -> None:
    sub = subs.from_manifest(manifest())
    assert subs.ready_condition(sub, progress())[:2] == ("True", subs.DELIVERING)
    failing = progress(problem=(subs.SINK_REJECTING, "answered 500"))
    assert subs.ready_condition(sub, failing) == ("False", subs.SINK_REJECTING, "answered 500")
    expired = progress(expired=7, expired_generation=3)
    state, reason, message = subs.ready_condition(sub, expired)
    assert (state, reason) == ("False", subs.EVENTS_EXPIRED) and "7 events" in message
    assert subs.ready_condition(sub, progress(expired=7, expired_generation=2))[0] == "True"


def test_status_keeps_the_transition_time_while_ready_holds() -> None:
    sub = subs.from_manifest(manifest())
    then = datetime(2026, 1, 1, tzinfo=UTC)
    first = subs.status(sub, progress(), {}, then)
    later = subs.status(sub, progress(lag_seconds=3.0), first, then + timedelta(hours=1))
    assert later["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert not subs.status_differs(first, later)  # only the lag's seconds moved
    failed = subs.status(
        sub, progress(problem=(subs.SINK_UNREACHABLE, "x")), later, then + timedelta(hours=2)
    )
    assert failed["conditions"][0]["lastTransitionTime"] == "2026-01-01T02:00:00Z"
    assert subs.status_differs(later, failed)
    assert first["sink"] == "http://mailer.team.svc:8080/hooks" and first["cursor"] == "5-1"
