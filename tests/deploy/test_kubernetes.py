"""The Kubernetes base (``deploy/kubernetes``), checked as the cluster would check it.

Every object validates with ``kubernetes-validate --strict`` against the newest Kubernetes
version the installed package ships. The ServiceMonitor is a CRD that package has no schema
for: it validates against a JSON schema vendored in ``tests/deploy/schemas/``, written from the
Prometheus Operator's API reference (every spec and endpoint field, unknown ones refused;
nested auth, TLS and relabel objects are only checked to be objects). ``kubectl kustomize``
renders the base as ``kubectl apply -k`` would. Then what the manifests promise is checked
against the code: ports, probes, user, secrets, grace period.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from scheduler.config import DATABASE_PASSWORD_ENV, load_schedule
from scheduler.healthcheck import LIVEZ_PATH
from tests.deploy.dockerfile import parse_stages

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes"
SCHEMA_DIR = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
SERVICE_MONITOR_SCHEMA = (
    Path(__file__).parent / "schemas" / ("servicemonitor-monitoring.coreos.com-v1.json")
)


def _newest_version() -> str:
    versions = [
        tuple(int(n) for n in m.groups())
        for d in SCHEMA_DIR.iterdir()
        if (m := re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)-local-strict", d.name))
    ]
    return ".".join(str(n) for n in max(versions))


def _kustomization() -> dict[str, Any]:
    data = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _resources() -> list[dict[str, Any]]:
    docs = []
    for name in _kustomization()["resources"]:
        docs.extend(d for d in yaml.safe_load_all((BASE / name).read_text()) if d)
    return docs


def _by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = [d["kind"] for d in docs]
    assert len(kinds) == len(set(kinds)), kinds
    return {d["kind"]: d for d in docs}


def _validate(doc: dict[str, Any]) -> None:
    if doc["kind"] == "ServiceMonitor":
        schema = json.loads(SERVICE_MONITOR_SCHEMA.read_text())
        jsonschema.validate(doc, schema, cls=jsonschema.Draft7Validator)
        return
    kubernetes_validate.validate(doc, _newest_version(), strict=True)


def _render(base: Path = BASE) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("kubectl is required in CI (.ci/run installs Debian's kubectl package)")
        pytest.skip("kubectl is not installed: the resource files are validated one by one")
    run = subprocess.run([kubectl, "kustomize", str(base)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return [d for d in yaml.safe_load_all(run.stdout) if d]


def test_validates_against_the_newest_kubernetes_the_package_ships() -> None:
    version = _newest_version()
    assert tuple(int(n) for n in version.split(".")) >= (1, 33, 0)
    for doc in _resources():
        _validate(doc)


def test_strict_validation_can_fail() -> None:
    """The checks above would catch a typo, in core kinds and in the ServiceMonitor."""
    deployment = _by_kind(_resources())["Deployment"]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, _newest_version(), strict=True)
    monitor = _by_kind(_resources())["ServiceMonitor"]
    typo = yaml.safe_load(yaml.safe_dump(monitor))
    typo["spec"]["endpoints"][0]["pth"] = "/metrics"
    with pytest.raises(jsonschema.ValidationError, match="pth"):
        _validate(typo)
    typo["spec"]["endpoints"][0] = {"port": "http", "interval": "thirty seconds"}
    with pytest.raises(jsonschema.ValidationError, match="thirty"):
        _validate(typo)


def test_kustomize_renders_the_base_and_every_object_validates() -> None:
    docs = _render()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "Job",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ]
    )
    for doc in docs:
        _validate(doc)
    objects = _by_kind(docs)
    config_map = objects["ConfigMap"]["metadata"]["name"]
    # A hash of the schedule in the name, and every pod template points at that name.
    assert re.fullmatch(r"share-scheduler-schedule-[a-z0-9]{10}", config_map), config_map
    for kind in ("Deployment", "Job"):
        volumes = objects[kind]["spec"]["template"]["spec"]["volumes"]
        assert {"name": config_map} in [v.get("configMap") for v in volumes], kind
    # Both containers of the Deployment got the env the init container defines (YAML anchor).
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["env"] == pod["initContainers"][0]["env"]


def test_a_changed_schedule_rolls_the_pods(tmp_path: Path) -> None:
    before = _by_kind(_render())["ConfigMap"]["metadata"]["name"]
    copy = tmp_path / "kubernetes"
    shutil.copytree(BASE, copy)
    schedule = copy / "schedule.yaml"
    schedule.write_text(schedule.read_text().replace('end: "20:00"', 'end: "19:00"'))
    after = _by_kind(_render(copy))["ConfigMap"]["metadata"]["name"]
    assert before != after, "a new ConfigMap name changes the pod template: a rollout"


def test_every_file_is_listed_and_the_schedule_is_valid() -> None:
    kustomization = _kustomization()
    (generator,) = kustomization["configMapGenerator"]
    listed = set(kustomization["resources"]) | set(generator["files"]) | {"kustomization.yaml"}
    assert listed == {p.name for p in BASE.iterdir()}
    env = {"LINQ_API_KEY": "k-123456", "LINQ_WEBHOOK_SECRET": "w-123456"}
    run = subprocess.run(
        [sys.executable, "-m", "scheduler", "config", "check", str(BASE / "schedule.yaml")],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
    )
    assert (run.returncode, run.stdout.strip()) == (0, "ok"), run.stderr
    schedule, _ = load_schedule(BASE / "schedule.yaml", env=env)
    assert schedule.database.url.startswith("postgresql+psycopg://")
    assert ":" not in schedule.database.url.split("//", 1)[1].split("@")[0], "no password"


def _pod(kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = _by_kind(_resources())[kind]["spec"]["template"]["spec"]
    return spec


def test_the_deployment_runs_replicas_probed_non_root_and_read_only() -> None:
    objects = _by_kind(_resources())
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]["spec"]
    schedule, _ = load_schedule(
        BASE / "schedule.yaml", env={"LINQ_API_KEY": "k", "LINQ_WEBHOOK_SECRET": "w"}
    )
    (daemon,) = pod["containers"]
    assert daemon["args"] == ["run"]
    (port,) = daemon["ports"]
    assert (port["name"], port["containerPort"]) == ("http", schedule.webhooks.port)
    assert daemon["livenessProbe"]["httpGet"] == {"path": LIVEZ_PATH, "port": "http"}
    assert daemon["startupProbe"]["httpGet"] == {"path": LIVEZ_PATH, "port": "http"}
    assert daemon["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # The image's numeric user, which runAsNonRoot can verify.
    image_user = parse_stages()[-1].instructions["USER"][-1]
    uid, gid = (int(n) for n in image_user.split(":"))
    for kind in ("Deployment", "Job"):
        spec = _pod(kind)
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True
        assert (security["runAsUser"], security["runAsGroup"]) == (uid, gid)
        assert spec["automountServiceAccountToken"] is False
        for container in spec.get("initContainers", []) + spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, (kind, container["name"])
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["requests"] and container["resources"]["limits"]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts["/etc/share-scheduler"] == "schedule"
            assert mounts["/tmp"] == "tmp"
            tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
            assert "emptyDir" in tmp
    grace = timedelta(seconds=pod["terminationGracePeriodSeconds"])
    assert grace > schedule.share_pass.shutdown_grace + timedelta(seconds=5)


def test_secrets_come_from_the_secret_under_the_names_the_schedule_reads() -> None:
    schedule, _ = load_schedule(
        BASE / "schedule.yaml", env={"LINQ_API_KEY": "k", "LINQ_WEBHOOK_SECRET": "w"}
    )
    wanted = {schedule.linq.api_key_env, *schedule.webhooks.secret_envs, DATABASE_PASSWORD_ENV}
    pod = _pod("Deployment")
    for container in pod["initContainers"] + pod["containers"]:
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in container["env"]
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert set(refs) == wanted, container["name"]
        assert {r["name"] for r in refs.values()} == {"share-scheduler"}
        assert all("value" not in e for e in container["env"] if e["name"] in wanted)
    (job,) = _pod("Job")["containers"]
    assert job["args"] == ["db", "upgrade"]
    job_refs = {e["name"] for e in job["env"] if "valueFrom" in e}
    assert job_refs == {DATABASE_PASSWORD_ENV}, "the migration needs the database only"
    (init,) = pod["initContainers"]
    assert init["args"] == ["db", "upgrade"]


def test_service_pdb_monitor_and_policy_select_the_daemon_pods() -> None:
    objects = _by_kind(_resources())
    labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    service = objects["Service"]
    assert selects(service["spec"]["selector"])
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"
    assert selects(objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"])
    assert objects["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    assert selects(objects["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"])
    monitor = objects["ServiceMonitor"]["spec"]
    # The monitor selects the Service (kustomize adds the name label to it).
    service_labels = {**service["metadata"]["labels"], **_kustomization()["labels"][0]["pairs"]}
    assert all(service_labels.get(k) == v for k, v in monitor["selector"]["matchLabels"].items())
    assert monitor["endpoints"][0]["port"] == port["name"]
    assert monitor["endpoints"][0]["path"] == "/metrics"
    policy = objects["NetworkPolicy"]["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    ingress_ports = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert ingress_ports == {8080}
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 443, 5432}
