"""Leader election with a coordination.k8s.io/v1 Lease, so exactly one of several replicas acts.

The algorithm follows client-go's: a candidate takes the Lease when it is free or when its holder has not
renewed it for `lease_duration` as observed on the candidate's own clock (no cross-machine clock
comparison); the leader renews every `retry_period`, starts no new work while it could not renew for
`renew_deadline`, and gives up (the process then exits) once another replica holds the Lease. Writes use the
Lease's resourceVersion, so two candidates can never both win.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from userservice_operator.kube import Kube

log = logging.getLogger(__name__)


def _micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Observed:
    """The holder record last seen on the Lease, and when it was first seen so (local monotonic clock)."""

    record: tuple[Any, ...]
    at: float


@dataclass(frozen=True)
class Decision:
    """Whether to write the Lease with this candidate as holder, and with how many transitions."""

    take: bool
    transitions: int
    observed: Observed
    taking_over_from: str = ""


def decide(
    spec: dict[str, Any], identity: str, observed: Observed | None, now: float, default_duration: float
) -> Decision:
    """The election rule for an existing Lease (pure): renew our own, take a free or expired one.

    Expiry is judged on our own clock: the holder's record must have stayed unchanged for its
    leaseDurationSeconds since we first saw it.
    """
    holder = spec.get("holderIdentity") or ""
    record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
    if observed is None or observed.record != record:
        observed = Observed(record, now)
    transitions = int(spec.get("leaseTransitions") or 0)
    if holder == identity:
        return Decision(True, transitions, observed)
    if not holder:
        return Decision(True, transitions + 1, observed)
    duration = float(spec.get("leaseDurationSeconds") or default_duration)
    if now - observed.at < duration:
        return Decision(False, transitions, observed)
    return Decision(True, transitions + 1, observed, taking_over_from=holder)


@dataclass
class LeaseConfig:
    name: str
    namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


class LeaderElector:
    def __init__(self, kube: Kube, config: LeaseConfig) -> None:
        self.kube = kube
        self.config = config
        self.is_leader = False
        self._observed: Observed | None = None

    def _body(self, lease: dict[str, Any] | None, transitions: int) -> dict[str, Any]:
        now = _micro_now()
        spec = {
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": int(self.config.lease_duration),
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }
        if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == self.config.identity:
            spec["acquireTime"] = lease["spec"].get("acquireTime", now)
        meta: dict[str, Any] = {"name": self.config.name, "namespace": self.config.namespace}
        if lease is not None:
            meta["resourceVersion"] = lease["metadata"]["resourceVersion"]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this candidate holds the Lease afterwards."""
        cfg = self.config
        lease = await self.kube.get("Lease", cfg.namespace, cfg.name)
        if lease is None:
            try:
                await self.kube.create("Lease", cfg.namespace, self._body(None, 0))
            except ApiException as exc:
                if exc.status == 409:
                    return False
                raise
            return True
        decision = decide(
            lease.get("spec") or {}, cfg.identity, self._observed, time.monotonic(), cfg.lease_duration
        )
        self._observed = decision.observed
        if not decision.take:
            return False
        if decision.taking_over_from:
            log.info(
                "lease %s/%s held by %s expired; taking over",
                cfg.namespace,
                cfg.name,
                decision.taking_over_from,
            )
        transitions = decision.transitions
        try:
            await self.kube.replace("Lease", cfg.namespace, cfg.name, self._body(lease, transitions))
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def acquire(self) -> None:
        """Wait until this candidate holds the Lease."""
        while True:
            try:
                if await self.try_acquire_or_renew():
                    self.is_leader = True
                    log.info("became leader (lease %s/%s)", self.config.namespace, self.config.name)
                    return
            except Exception as exc:
                log.warning("leader election attempt failed: %s", exc)
            await asyncio.sleep(self.config.retry_period)

    async def keep(self, acting: asyncio.Event) -> None:
        """Renew every retry_period; return when another replica holds the Lease (leadership lost).

        While renewals fail (the API server unreachable from here) for longer than renew_deadline, `acting` is
        cleared: within lease_duration another replica may take over, so no new work starts. The next renewal
        that gets through sets it again if the Lease is still ours, or returns if it is not. Every action goes
        through the same API server, so an outage costs no restart and gives no second leader a window.
        """
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(self.config.retry_period)
            try:
                if not await self.try_acquire_or_renew():
                    log.error("lease %s/%s taken by another replica", self.config.namespace, self.config.name)
                    break
                last_ok = time.monotonic()
                if not acting.is_set():
                    log.info("lease %s/%s renewed again; acting", self.config.namespace, self.config.name)
                    acting.set()
                continue
            except Exception as exc:
                log.warning("lease renewal failed: %s", exc)
            if acting.is_set() and time.monotonic() - last_ok > self.config.renew_deadline:
                log.error(
                    "could not renew the lease for %.0fs; no new work until it is renewed",
                    self.config.renew_deadline,
                )
                acting.clear()
        self.is_leader = False

    async def release(self) -> None:
        """Give the Lease up (on clean shutdown) so a standby takes over at once."""
        if not self.is_leader:
            return
        self.is_leader = False
        cfg = self.config
        try:
            lease = await self.kube.get("Lease", cfg.namespace, cfg.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != cfg.identity:
                return
            body = self._body(lease, int(lease["spec"].get("leaseTransitions") or 0))
            body["spec"]["holderIdentity"] = ""
            body["spec"]["leaseDurationSeconds"] = 1
            await self.kube.replace("Lease", cfg.namespace, cfg.name, body)
            log.info("released lease %s/%s", cfg.namespace, cfg.name)
        except Exception as exc:
            log.warning("could not release the lease: %s", exc)
