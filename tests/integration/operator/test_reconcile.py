"""The operator (a `userservice-operator` subprocess, least-privilege RBAC) against a real API server.

Each test works in its own `it-*` namespace through kubectl and the kubernetes client. Waits are
"converges within N seconds" polls; nothing asserts wall-clock durations.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.operator.conftest import Operator, install_operator_api, wait_for
from tests.integration.operator.helpers import (
    GROUP,
    PLURAL,
    VERSION,
    apply,
    child_write_events,
    complete_job,
    condition,
    container,
    custom_objects,
    get,
    must_get,
    reconciled,
    resource_versions,
    secret,
    userservice,
)
from tests.support.kube import KubeCluster

pytestmark = pytest.mark.needs_kube
HERE = Path(__file__).parent


def test_children_have_the_right_spec(operator_cluster: KubeCluster, it_namespace: str) -> None:
    ns = it_namespace
    apply(operator_cluster, ns, secret())
    body = userservice(
        "alpha",
        autoscaling={"minReplicas": 2, "maxReplicas": 5, "targetRequestsPerSecond": 100},
        env=[{"name": "FEATURE_X", "value": "on"}],
        pod={"nodeSelector": {"disk": "ssd"}, "annotations": {"team": "a"}},
    )
    custom_objects(operator_cluster).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    dep = wait_for(lambda: get(operator_cluster, ns, "deployment", "alpha"), 30, what="deployment")
    svc = wait_for(lambda: get(operator_cluster, ns, "service", "alpha"), 30)
    hpa = wait_for(lambda: get(operator_cluster, ns, "hpa", "alpha"), 30)
    pdb = wait_for(lambda: get(operator_cluster, ns, "pdb", "alpha"), 30)
    us = wait_for(lambda: reconciled(operator_cluster, ns, "alpha"), 30)

    for child in (dep, svc, hpa, pdb):
        (ref,) = child["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "UserService",
            "alpha",
            us["metadata"]["uid"],
            True,
        )
        labels = child["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "userservice-operator"
        assert labels["app.kubernetes.io/instance"] == "alpha"
        managers = {m["manager"] for m in child["metadata"]["managedFields"] if m["operation"] == "Apply"}
        assert managers == {"userservice-operator"}

    c = container(dep)
    assert c["image"] == "registry.example/userservice:1.0.0"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["lifecycle"]["preStop"]["sleep"]["seconds"] == 5
    env = {e["name"]: e for e in c["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "db", "key": "url"}
    assert env["FEATURE_X"]["value"] == "on"
    pod = dep["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert pod["terminationGracePeriodSeconds"] == 30
    assert dep["spec"]["template"]["metadata"]["annotations"] == {"team": "a"}
    # autoscaling on: the operator does not own spec.replicas (the HPA does)
    owned = json.dumps(
        [m for m in dep["metadata"]["managedFields"] if m["manager"] == "userservice-operator"]
    )
    assert '"f:replicas"' not in owned
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {
        "http": 8080,
        "grpc": 50051,
        "management": 9090,
    }
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 5
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource", "Pods"]
    assert pdb["spec"]["maxUnavailable"] == 1
    st = us["status"]
    assert st["endpoints"] == {"http": f"http://alpha.{ns}.svc:8080", "grpc": f"alpha.{ns}.svc:50051"}
    for ctype in ("Ready", "Progressing", "Degraded", "MigrationsComplete", "Monitoring"):
        cond = condition(us, ctype)
        assert cond["reason"] and cond["message"] and cond["lastTransitionTime"]
        assert cond["observedGeneration"] == us["metadata"]["generation"]
    assert condition(us, "Degraded")["status"] == "False"
    # Events record what was done
    events = operator_cluster.kubectl(
        "-n", ns, "get", "events", "--field-selector=involvedObject.kind=UserService", "-o", "json"
    ).stdout
    reasons = {e["reason"] for e in json.loads(events)["items"]}
    assert "Created" in reasons
    # kubectl shows the printer columns
    table = operator_cluster.kubectl("-n", ns, "get", "usvc").stdout
    assert table.split()[:5] == ["NAME", "READY", "REPLICAS", "IMAGE", "AGE"]


def test_drift_is_restored_and_others_fields_left_alone(
    operator_cluster: KubeCluster, it_namespace: str
) -> None:
    ns = it_namespace
    apply(operator_cluster, ns, secret(), userservice("drift", replicas=2))
    wait_for(lambda: get(operator_cluster, ns, "deployment", "drift"), 30)
    # a hand edit of a field the operator owns is put back
    operator_cluster.kubectl(
        "-n",
        ns,
        "patch",
        "deployment",
        "drift",
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"evil:1"}]',
    )
    wait_for(
        lambda: container(must_get(operator_cluster, ns, "deployment", "drift"))["image"].endswith(":1.0.0"),
        20,
        what="image restored",
    )
    operator_cluster.kubectl(
        "-n",
        ns,
        "patch",
        "service",
        "drift",
        "--type=merge",
        "-p",
        '{"spec":{"ports":[{"name":"http","port":1,"targetPort":"http"}]}}',
    )
    wait_for(
        lambda: (
            {p["port"] for p in must_get(operator_cluster, ns, "service", "drift")["spec"]["ports"]}
            == {8080, 50051, 9090}
        ),
        20,
        what="service ports restored",
    )
    # a deleted child is re-created
    old_uid = must_get(operator_cluster, ns, "service", "drift")["metadata"]["uid"]
    operator_cluster.kubectl("-n", ns, "delete", "service", "drift")
    wait_for(
        lambda: (
            (get(operator_cluster, ns, "service", "drift") or {}).get("metadata", {}).get("uid")
            not in (None, old_uid)
        ),
        20,
        what="service re-created",
    )
    operator_cluster.kubectl("-n", ns, "delete", "pdb", "drift")
    wait_for(lambda: get(operator_cluster, ns, "pdb", "drift"), 20, what="pdb re-created")
    # a label someone else added is theirs: left alone
    operator_cluster.kubectl("-n", ns, "label", "deployment", "drift", "owner=someone-else")
    time.sleep(4)  # longer than the shared operator's resync (3 s)
    assert (
        must_get(operator_cluster, ns, "deployment", "drift")["metadata"]["labels"]["owner"] == "someone-else"
    )


def test_hpa_owns_replicas_when_autoscaling(operator_cluster: KubeCluster, it_namespace: str) -> None:
    ns = it_namespace
    apply(
        operator_cluster,
        ns,
        secret(),
        userservice("scaled", autoscaling={"minReplicas": 1, "maxReplicas": 9}),
    )
    wait_for(lambda: get(operator_cluster, ns, "hpa", "scaled"), 30)
    # what the HPA controller does: write the scale subresource under its own manager
    operator_cluster.kubectl("-n", ns, "scale", "deployment", "scaled", "--replicas=7")
    time.sleep(4)  # a few resyncs of the shared operator
    assert must_get(operator_cluster, ns, "deployment", "scaled")["spec"]["replicas"] == 7
    # autoscaling off: the operator takes spec.replicas back and removes the HPA
    apply(operator_cluster, ns, userservice("scaled", replicas=3))
    wait_for(lambda: must_get(operator_cluster, ns, "deployment", "scaled")["spec"]["replicas"] == 3, 20)
    wait_for(lambda: get(operator_cluster, ns, "hpa", "scaled") is None, 20, what="hpa removed")


def _hpa_status(namespace: str, name: str, active: str, reason: str, message: str) -> list[str]:
    """kubectl args writing the HPA controller's status: AbleToScale True and ScalingActive as given."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    conditions = [
        {"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale", "message": "got the scale",
         "lastTransitionTime": now},
        {"type": "ScalingActive", "status": active, "reason": reason, "message": message, "lastTransitionTime": now},
    ]  # fmt: skip
    status = {"currentReplicas": 1, "desiredReplicas": 1, "conditions": conditions}
    return ["-n", namespace, "patch", "hpa", name, "--subresource=status", "--type=merge", "-p",
            json.dumps({"status": status})]  # fmt: skip


def test_unavailable_autoscaling_metric_is_a_condition(
    operator_cluster: KubeCluster, it_namespace: str
) -> None:
    """Without a metrics adapter the HPA reads no request rate and never scales down; the UserService says so with
    the HPA's reason and message, and clears it once the HPA reads its metrics. (The cluster's own HPA controller
    may write the HPA status too; each write is followed by the operator within a second.)"""
    ns = it_namespace
    apply(
        operator_cluster,
        ns,
        secret(),
        userservice("rps", autoscaling={"minReplicas": 1, "maxReplicas": 3, "targetRequestsPerSecond": 10}),
    )
    wait_for(lambda: get(operator_cluster, ns, "hpa", "rps"), 30, what="hpa")
    message = (
        "the HPA was unable to compute the replica count: unable to get metric userservice_requests_per_second: "
        "unable to fetch metrics from custom metrics API: no custom metrics API (custom.metrics.k8s.io) registered"
    )
    operator_cluster.kubectl(*_hpa_status(ns, "rps", "False", "FailedGetPodsMetric", message))
    cond = wait_for(
        lambda: (
            (c := condition(get(operator_cluster, ns, PLURAL, "rps"), "AutoscalingMetricAvailable"))["reason"]
            == "FailedGetPodsMetric"
            and c
        ),
        10,
        0.1,
        what="AutoscalingMetricAvailable=False",
    )
    assert cond["status"] == "False" and message in cond["message"], cond
    operator_cluster.kubectl(
        *_hpa_status(ns, "rps", "True", "ValidMetricFound", "the HPA computed the count")
    )
    cond = wait_for(
        lambda: (
            (c := condition(get(operator_cluster, ns, PLURAL, "rps"), "AutoscalingMetricAvailable"))["reason"]
            == "ValidMetricFound"
            and c
        ),
        10,
        0.1,
        what="AutoscalingMetricAvailable=True",
    )
    assert cond["status"] == "True", cond


def test_scale_subresource(operator_cluster: KubeCluster, it_namespace: str) -> None:
    ns = it_namespace
    apply(operator_cluster, ns, secret(), userservice("sc", replicas=1))
    wait_for(lambda: get(operator_cluster, ns, "deployment", "sc"), 30)
    operator_cluster.kubectl("-n", ns, "scale", "usvc", "sc", "--replicas=4")
    wait_for(lambda: must_get(operator_cluster, ns, "deployment", "sc")["spec"]["replicas"] == 4, 20)


def test_spec_change_propagates_and_idle_makes_no_writes(
    operator_cluster: KubeCluster, it_namespace: str
) -> None:
    ns = it_namespace
    apply(operator_cluster, ns, secret(), userservice("chg", replicas=1))
    wait_for(lambda: reconciled(operator_cluster, ns, "chg"), 30)
    svc_before = must_get(operator_cluster, ns, "service", "chg")
    pdb_before = must_get(operator_cluster, ns, "pdb", "chg")
    custom_objects(operator_cluster).patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "chg", {"spec": {"http": {"port": 9000}, "logLevel": "debug"}}
    )
    wait_for(
        lambda: (
            {p["name"]: p["port"] for p in must_get(operator_cluster, ns, "service", "chg")["spec"]["ports"]}[
                "http"
            ]
            == 9000
        ),
        20,
        what="service port",
    )
    dep = wait_for(
        lambda: (
            (d := must_get(operator_cluster, ns, "deployment", "chg"))
            and {e["name"]: e.get("value") for e in container(d)["env"]}["LOG_LEVEL"] == "debug"
            and d
        ),
        20,
    )
    assert container(dep)["ports"][0]["containerPort"] == 9000
    # only what changed was written: the PDB (not affected by this change) kept its resourceVersion
    assert (
        must_get(operator_cluster, ns, "pdb", "chg")["metadata"]["resourceVersion"]
        == (pdb_before["metadata"]["resourceVersion"])
    )
    assert (
        svc_before["metadata"]["uid"] == must_get(operator_cluster, ns, "service", "chg")["metadata"]["uid"]
    )
    # idle: once converged, several resync periods pass without a single write to the resource or its children
    # (the operator's Events of child writes are this namespace's own: its counter also counts the namespaces
    # earlier tests are deleting)
    wait_for(lambda: reconciled(operator_cluster, ns, "chg"), 20)
    time.sleep(2)
    before = resource_versions(operator_cluster, ns)
    writes = child_write_events(operator_cluster, ns)
    time.sleep(8)
    assert resource_versions(operator_cluster, ns) == before
    assert child_write_events(operator_cluster, ns) == writes


def test_missing_secret_is_a_condition_then_resolved(
    operator_cluster: KubeCluster, it_namespace: str
) -> None:
    ns = it_namespace
    apply(operator_cluster, ns, userservice("nosecret"))
    us = wait_for(lambda: reconciled(operator_cluster, ns, "nosecret"), 30)
    degraded = condition(us, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "SecretNotFound")
    assert "'db'" in degraded["message"]
    assert condition(us, "Ready")["reason"] == "SecretNotFound"
    assert get(operator_cluster, ns, "deployment", "nosecret") is None
    warnings = operator_cluster.kubectl("-n", ns, "get", "events", "--field-selector=type=Warning").stdout
    assert "SecretNotFound" in warnings
    # a Secret without the key is still a problem, with its own reason
    apply(operator_cluster, ns, secret(key="other"))
    wait_for(
        lambda: (
            condition(get(operator_cluster, ns, PLURAL, "nosecret"), "Degraded")["reason"]
            == "SecretKeyNotFound"
        ),
        30,
    )
    apply(operator_cluster, ns, secret())
    wait_for(lambda: get(operator_cluster, ns, "deployment", "nosecret"), 30, what="deployment after secret")
    wait_for(
        lambda: condition(get(operator_cluster, ns, PLURAL, "nosecret"), "Degraded")["status"] == "False", 30
    )


def test_migration_job_gates_the_rollout(operator_cluster: KubeCluster, it_namespace: str) -> None:
    ns = it_namespace
    apply(operator_cluster, ns, secret(), userservice("mig", migrations={"enabled": True}, replicas=2))
    job1 = wait_for(
        lambda: operator_cluster.kubectl("-n", ns, "get", "jobs", "-o", "name").stdout.split(), 30
    )[0]
    dep = wait_for(lambda: get(operator_cluster, ns, "deployment", "mig"), 30)
    assert dep["spec"]["replicas"] == 0  # no pod runs before the first migration
    job = must_get(operator_cluster, ns, "job", job1.split("/")[1])
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    us = wait_for(lambda: reconciled(operator_cluster, ns, "mig"), 30)
    assert condition(us, "MigrationsComplete")["reason"] == "MigrationRunning"
    assert condition(us, "Progressing")["status"] == "True"

    complete_job(operator_cluster, ns, job1.split("/")[1])
    wait_for(lambda: must_get(operator_cluster, ns, "deployment", "mig")["spec"]["replicas"] == 2, 20)
    wait_for(
        lambda: condition(get(operator_cluster, ns, PLURAL, "mig"), "MigrationsComplete")["status"] == "True",
        20,
    )

    # a new image gets a new Job; until it succeeds the Deployment stays at the old image
    apply(
        operator_cluster,
        ns,
        userservice(
            "mig", migrations={"enabled": True}, replicas=2, image="registry.example/userservice:2.0.0"
        ),
    )
    names = wait_for(
        lambda: (
            (n := operator_cluster.kubectl("-n", ns, "get", "jobs", "-o", "name").stdout.split())
            and len(n) == 2
            and n
        ),
        30,
    )
    job2 = next(n for n in names if n != job1).split("/")[1]
    assert must_get(operator_cluster, ns, "job", job2)["spec"]["template"]["spec"]["containers"][0][
        "image"
    ].endswith(":2.0.0")
    time.sleep(2)
    assert container(must_get(operator_cluster, ns, "deployment", "mig"))["image"].endswith(":1.0.0")
    complete_job(operator_cluster, ns, job2, failed=True)
    us = wait_for(
        lambda: (
            (u := get(operator_cluster, ns, PLURAL, "mig"))
            and condition(u, "MigrationsComplete")["reason"] == "MigrationFailed"
            and u
        ),
        20,
    )
    assert condition(us, "Degraded")["status"] == "True"
    assert "held" in condition(us, "Ready")["message"]
    assert container(must_get(operator_cluster, ns, "deployment", "mig"))["image"].endswith(":1.0.0")

    # a fixed image: a third Job; its success rolls the Deployment and prunes the older Jobs
    apply(
        operator_cluster,
        ns,
        userservice(
            "mig", migrations={"enabled": True}, replicas=2, image="registry.example/userservice:2.0.1"
        ),
    )
    job3 = wait_for(
        lambda: [
            n
            for n in operator_cluster.kubectl("-n", ns, "get", "jobs", "-o", "name").stdout.split()
            if n not in (job1, f"job.batch/{job2}")
        ],
        30,
    )[0].split("/")[1]
    complete_job(operator_cluster, ns, job3)
    wait_for(
        lambda: container(must_get(operator_cluster, ns, "deployment", "mig"))["image"].endswith(":2.0.1"), 20
    )
    wait_for(
        lambda: (
            operator_cluster.kubectl("-n", ns, "get", "jobs", "-o", "name").stdout.split()
            == [f"job.batch/{job3}"]
        ),
        30,
        what="old jobs pruned",
    )
    us = wait_for(
        lambda: (
            (u := get(operator_cluster, ns, PLURAL, "mig"))
            and condition(u, "Degraded")["status"] == "False"
            and u
        ),
        20,
    )
    assert us["status"]["migration"]["completedImage"].endswith(":2.0.1")


def test_settings_that_cannot_change_the_schema_run_no_new_migration(
    operator_cluster: KubeCluster, it_namespace: str
) -> None:
    """logLevel and other variables reach the Deployment without a new migration Job; a PG* variable (which
    can point the migration at another database) runs one."""
    ns = it_namespace

    def jobs() -> list[str]:
        return sorted(operator_cluster.kubectl("-n", ns, "get", "jobs", "-o", "name").stdout.split())

    apply(operator_cluster, ns, secret(), userservice("quiet", migrations={"enabled": True}))
    (job,) = wait_for(jobs, 30, what="the first migration Job")
    complete_job(operator_cluster, ns, job.split("/")[1])
    wait_for(lambda: must_get(operator_cluster, ns, "deployment", "quiet")["spec"]["replicas"] == 2, 20)

    env = [{"name": "FEATURE_X", "value": "on"}]
    apply(
        operator_cluster,
        ns,
        userservice("quiet", migrations={"enabled": True}, logLevel="debug", env=env),
    )

    def deployment_env() -> dict[str, str]:
        c = container(must_get(operator_cluster, ns, "deployment", "quiet"))
        return {e["name"]: e.get("value", "") for e in c["env"]}

    wait_for(lambda: deployment_env()["LOG_LEVEL"] == "debug" and "FEATURE_X" in deployment_env(), 20)
    us = wait_for(lambda: reconciled(operator_cluster, ns, "quiet"), 20)
    assert condition(us, "MigrationsComplete")["status"] == "True"
    assert jobs() == [job]

    env = [*env, {"name": "PGSSLMODE", "value": "require"}]
    apply(
        operator_cluster,
        ns,
        userservice("quiet", migrations={"enabled": True}, logLevel="debug", env=env),
    )
    wait_for(lambda: len(jobs()) == 2, 30, what="a migration Job for the new connection settings")


def test_monitoring_appears_when_crds_installed(operator_cluster: KubeCluster, it_namespace: str) -> None:
    ns = it_namespace
    body = userservice(
        "mon",
        monitoring={
            "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
            "prometheusRule": {"enabled": True},
        },
    )
    apply(operator_cluster, ns, secret(), body)
    us = wait_for(lambda: reconciled(operator_cluster, ns, "mon"), 30)
    assert condition(us, "Monitoring")["reason"] == "CRDNotInstalled"
    operator_cluster.kubectl("apply", "-f", str(HERE / "monitoring_crds.yaml"))
    try:
        sm = wait_for(
            lambda: get(operator_cluster, ns, "servicemonitors.monitoring.coreos.com", "mon"),
            40,
            what="servicemonitor",
        )
        assert sm["metadata"]["labels"]["release"] == "prom"
        assert sm["spec"]["endpoints"][0]["port"] == "management"
        wait_for(lambda: get(operator_cluster, ns, "prometheusrules.monitoring.coreos.com", "mon"), 20)
        wait_for(
            lambda: condition(get(operator_cluster, ns, PLURAL, "mon"), "Monitoring")["status"] == "True", 20
        )
        # drift on a ServiceMonitor is restored as well
        operator_cluster.kubectl("-n", ns, "delete", "servicemonitors.monitoring.coreos.com", "mon")
        wait_for(lambda: get(operator_cluster, ns, "servicemonitors.monitoring.coreos.com", "mon"), 30)
    finally:
        operator_cluster.kubectl(
            "delete", "-f", str(HERE / "monitoring_crds.yaml"), "--wait=true", check=False
        )


def test_delete_cleans_up(operator_cluster: KubeCluster, it_namespace: str) -> None:
    ns = it_namespace
    apply(operator_cluster, ns, secret(), userservice("gone", migrations={"enabled": True}))
    wait_for(lambda: get(operator_cluster, ns, "deployment", "gone"), 30)
    wait_for(lambda: operator_cluster.kubectl("-n", ns, "get", "jobs", "-o", "name").stdout.strip(), 30)
    operator_cluster.kubectl("-n", ns, "delete", "usvc", "gone")
    kinds = "deployments,services,poddisruptionbudgets,horizontalpodautoscalers,jobs,replicasets"
    wait_for(
        lambda: operator_cluster.kubectl("-n", ns, "get", kinds, "-o", "name").stdout.strip() == "",
        60,
        what="children garbage-collected",
    )
    assert get(operator_cluster, ns, "secret", "db") is not None  # the user's Secret is not ours


def test_samples_apply(operator_cluster: KubeCluster, it_namespace: str) -> None:
    """`kubectl apply -f deploy/samples/` shows the resource and its children."""
    ns = it_namespace
    samples = Path(__file__).resolve().parents[3] / "deploy" / "samples"
    operator_cluster.kubectl("-n", ns, "apply", "-f", str(samples))
    wait_for(lambda: get(operator_cluster, ns, "service", "users"), 30)
    wait_for(lambda: get(operator_cluster, ns, "deployment", "users"), 30)
    wait_for(lambda: get(operator_cluster, ns, "pdb", "users"), 30)
    job = wait_for(
        lambda: operator_cluster.kubectl("-n", ns, "get", "jobs", "-o", "name").stdout.split(), 30
    )[0]
    complete_job(operator_cluster, ns, job.split("/")[1])
    wait_for(lambda: get(operator_cluster, ns, "hpa", "users"), 30)
    us = wait_for(lambda: reconciled(operator_cluster, ns, "users"), 30)
    assert condition(us, "MigrationsComplete")["status"] == "True"
    # The sample subscription's signing Secret is readable by the instance's pods, by name only: the operator,
    # under its own least-privilege RBAC, could grant it (the API server refuses to grant what one lacks).
    account = f"system:serviceaccount:{ns}:users"

    def can(*args: str) -> bool:
        out = operator_cluster.kubectl("auth", "can-i", *args, "-n", ns, f"--as={account}", check=False)
        return out.stdout.strip() == "yes"

    wait_for(lambda: can("get", "secret/users-hooks"), 30)
    assert can("list", "usereventsubscriptions.userservice.io")
    assert can("patch", "usereventsubscriptions.userservice.io", "--subresource=status")
    assert not can("get", "secret/users-db") and not can("list", "secrets")
    assert not can("update", "usereventsubscriptions.userservice.io")
    # A second subscription naming another Secret: the Role follows.
    sub = yaml.safe_load_all((samples / "subscription.yaml").read_text())
    (sample,) = [d for d in sub if d and d["kind"] == "UserEventSubscription"]
    sample["metadata"]["name"] = "audit"
    sample["spec"]["signingSecretRef"]["name"] = "audit-hooks"
    operator_cluster.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(sample))
    wait_for(lambda: can("get", "secret/audit-hooks"), 30)
    operator_cluster.kubectl("-n", ns, "delete", "usereventsubscription", "audit")
    wait_for(lambda: not can("get", "secret/audit-hooks"), 30)


def test_hundred_userservices(
    operator_cluster: KubeCluster, it_namespace: str, shared_operator: Operator
) -> None:
    ns = it_namespace
    docs = [secret()] + [userservice(f"svc-{i:03d}", replicas=1) for i in range(100)]
    started = time.monotonic()
    apply(operator_cluster, ns, *docs)

    def all_reconciled() -> bool:
        items = json.loads(operator_cluster.kubectl("-n", ns, "get", "usvc", "-o", "json").stdout)["items"]
        done = [
            u
            for u in items
            if (u.get("status") or {}).get("observedGeneration") == u["metadata"]["generation"]
            and condition(u, "Degraded")["status"] == "False"
        ]
        return len(done) == 100

    wait_for(all_reconciled, 240, interval=2, what="100 UserServices reconciled")
    print(f"\nmeasured: 100 UserServices applied and reconciled in {time.monotonic() - started:.1f}s")
    deployments = operator_cluster.kubectl("-n", ns, "get", "deployments", "-o", "name").stdout.split()
    services = operator_cluster.kubectl("-n", ns, "get", "services", "-o", "name").stdout.split()
    assert len(deployments) == 100 and len(services) == 100
    # no reconcile of these 100 failed (other tests' namespaces being torn down meanwhile may log retries)
    failures = [
        line
        for line in shared_operator.log(tail=100000).splitlines()
        if f"{ns}/" in line and ("reconcile failed" in line or '"level": "ERROR"' in line)
    ]
    assert failures == []
    assert [e for e in shared_operator.errors() if ns in json.dumps(e)] == []


def test_api_errors_become_a_condition_and_clear(operator_cluster: KubeCluster, it_namespace: str) -> None:
    """An API error (here: the operator's RBAC lacking PodDisruptionBudgets) is shown, retried, then cleared."""
    ns = it_namespace
    apply(operator_cluster, ns, secret(), userservice("err", podDisruptionBudget={"enabled": False}))
    wait_for(lambda: reconciled(operator_cluster, ns, "err"), 30)
    role = json.loads(
        operator_cluster.kubectl("get", "clusterrole", "userservice-operator", "-o", "json").stdout
    )
    role["rules"] = [r for r in role["rules"] if "poddisruptionbudgets" not in r["resources"]]
    operator_cluster.kubectl("replace", "-f", "-", input=json.dumps(role))
    try:
        apply(operator_cluster, ns, userservice("err", podDisruptionBudget={"enabled": True}))
        degraded = wait_for(
            lambda: (
                (c := condition(get(operator_cluster, ns, PLURAL, "err"), "Degraded"))["reason"]
                == "ReconcileError"
                and c
            ),
            30,
            what="ReconcileError condition",
        )
        assert degraded["status"] == "True"
        assert "forbidden" in degraded["message"]
    finally:
        install_operator_api(operator_cluster)  # restores the ClusterRole from rbac.yaml
    wait_for(lambda: get(operator_cluster, ns, "pdb", "err"), 30, what="pdb after RBAC restored")
    wait_for(lambda: condition(get(operator_cluster, ns, PLURAL, "err"), "Degraded")["status"] == "False", 30)


def test_access_children_and_the_cluster_binding_going_with_the_userservice(
    operator_cluster: KubeCluster, it_namespace: str
) -> None:
    """A ServiceAccount that may review tokens and access (and nothing more), a NetworkPolicy, and a
    ClusterRoleBinding that cannot be owner-referenced: the operator deletes it with the UserService, and
    deletes one left behind for a UserService that no longer exists."""
    ns = it_namespace
    apply(operator_cluster, ns, secret(), userservice("guarded", tls={"secretName": "guarded-tls"}))
    binding = f"userservice-access-reviewer:{ns}:guarded"
    crb = wait_for(lambda: get(operator_cluster, "", "clusterrolebinding", binding), 30, what="binding")
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "guarded", "namespace": ns}]
    sa = must_get(operator_cluster, ns, "serviceaccount", "guarded")
    assert sa["metadata"]["ownerReferences"][0]["name"] == "guarded"
    policy = wait_for(lambda: get(operator_cluster, ns, "networkpolicy", "guarded"), 30, what="policy")
    assert [r["ports"][0]["port"] for r in policy["spec"]["ingress"]] == [8080, 9090]
    dep = wait_for(lambda: get(operator_cluster, ns, "deployment", "guarded"), 30, what="deployment")
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "guarded"
    env = {e["name"]: e.get("value") for e in container(dep)["env"]}
    assert env["AUTH_AUDIENCE"] == f"userservice.io/{ns}/guarded"
    assert env["TLS_CERT_FILE"] == "/etc/userservice/tls/tls.crt"
    service_account = f"--as=system:serviceaccount:{ns}:guarded"

    def can(*args: str) -> str:
        return operator_cluster.kubectl("auth", "can-i", *args, service_account, check=False).stdout.strip()

    assert can("create", "tokenreviews.authentication.k8s.io") == "yes"
    assert can("create", "subjectaccessreviews.authorization.k8s.io") == "yes"
    assert can("get", "secrets", "-n", ns) == "no"
    assert can("create", "selfsubjectaccessreviews.authorization.k8s.io") == "yes"  # every user may

    # Turned off, the NetworkPolicy goes; the rest stays.
    operator_cluster.kubectl(
        "-n",
        ns,
        "patch",
        "usvc",
        "guarded",
        "--type=merge",
        "-p",
        '{"spec":{"access":{"networkPolicy":{"enabled":false}}}}',
    )
    wait_for(lambda: get(operator_cluster, ns, "networkpolicy", "guarded") is None, 30, what="policy deleted")

    operator_cluster.kubectl("-n", ns, "delete", "usvc", "guarded")
    wait_for(
        lambda: get(operator_cluster, "", "clusterrolebinding", binding) is None, 30, what="binding deleted"
    )

    # One left behind (say the operator was down when its UserService went): deleted when seen.
    orphan = f"userservice-access-reviewer:{ns}:ghost"
    operator_cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {
                    "name": orphan,
                    "labels": {
                        "app.kubernetes.io/managed-by": "userservice-operator",
                        "app.kubernetes.io/instance": "ghost",
                        "userservice.io/namespace": ns,
                    },
                },
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "userservice-access-reviewer",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "ghost", "namespace": ns}],
            }
        ),
    )
    wait_for(
        lambda: get(operator_cluster, "", "clusterrolebinding", orphan) is None, 30, what="orphan deleted"
    )
