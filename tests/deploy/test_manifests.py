"""compose.yaml, the Kubernetes manifests and the Containerfile, checked without a container
engine or a cluster: they parse, the fields that matter say what they must, and every variable
they set is one PixelFlow documents and accepts (its own config parser loads them)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from pixelflow.config import Role, load_settings, parse_address
from tests.support.envdoc import REPO, documented, interpolate, references

KUBE = REPO / "deploy" / "kubernetes"
COMPOSE = REPO / "compose.yaml"
CONTAINERFILE = REPO / "Containerfile"
IMAGE_USER = 10001  # the Containerfile's USER


# -- Kubernetes ----------------------------------------------------------------------------------


def kube_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    documents = []
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((KUBE / name).read_text()):
            assert document["apiVersion"] and document["metadata"]["name"], name
            documents.append(document)
    return documents


def kube(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in kube_documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    return found


def kube_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a pod gets: the ConfigMap, the Secret (filled in) and ``extra``."""
    env = dict(kube("ConfigMap", "pixelflow")["data"])
    secrets = kube("Secret", "pixelflow-secrets")["stringData"]
    assert all(value == "" for value in secrets.values()), "no secret values in the repository"
    env.update({name: f"test-{name.lower()}" for name in secrets})
    env["PIXELFLOW_DATABASE_URL"] = "postgresql://pixelflow@postgres/pixelflow"
    return {**env, **(extra or {})}


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    on_disk = {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk
    kinds = {(d["kind"], d["metadata"]["name"]) for d in kube_documents()}
    assert {
        ("Deployment", "pixelflow-api"),
        ("Deployment", "pixelflow-worker"),
        ("Job", "pixelflow-migrate"),
        ("Service", "pixelflow-api"),
        ("ConfigMap", "pixelflow"),
        ("Secret", "pixelflow-secrets"),
        ("HorizontalPodAutoscaler", "pixelflow-worker"),
    } <= kinds
    assert {name for kind, name in kinds if kind == "PodDisruptionBudget"}


@pytest.mark.parametrize(("name", "role", "port_name", "variable"), [
    ("pixelflow-api", "api", "http", "PIXELFLOW_API_ADDR"),
    ("pixelflow-worker", "worker", "metrics", "WORKER_METRICS_ADDR"),
])  # fmt: skip
def test_each_role_has_probes_that_its_process_answers(
    name: str, role: str, port_name: str, variable: str
) -> None:
    deployment = kube("Deployment", name)
    (container,) = containers(deployment)
    assert container["args"] == [role]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port_name}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port_name}
    # The probed port is the one the process listens on, per the config it is given.
    address = parse_address(variable, kube_env()[variable])
    assert address is not None and ports[port_name] == address.port
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_every_pod_runs_as_the_images_non_root_user() -> None:
    workloads = [d for d in kube_documents() if d["kind"] in {"Deployment", "Job"}]
    assert len(workloads) == 3
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, workload["metadata"]["name"]
        assert pod["securityContext"]["runAsUser"] == IMAGE_USER
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
            assert "memory" in resources["limits"], container["name"]
            refs = [next(iter(ref.values()))["name"] for ref in container["envFrom"]]
            assert refs == ["pixelflow", "pixelflow-secrets"]


def test_worker_resources_come_from_a_measurement_and_cover_it() -> None:
    text = (KUBE / "worker.yaml").read_text()
    peak = re.search(r"(\d+) MiB with WORKER_MAX_ACTIVE_JOBS=2", text)
    assert peak, "the worker's memory request must cite its measurement"
    (container,) = containers(kube("Deployment", "pixelflow-worker"))
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["WORKER_MAX_ACTIVE_JOBS"] == "2"
    request = container["resources"]["requests"]["memory"]
    assert request.endswith("Mi") and int(request[:-2]) >= int(peak[1])


def test_worker_gets_longer_than_its_shutdown_grace_to_stop() -> None:
    spec = kube("Deployment", "pixelflow-worker")["spec"]["template"]["spec"]
    (worker,) = containers(kube("Deployment", "pixelflow-worker"))
    worker_env = {item["name"]: item["value"] for item in worker["env"]}
    grace = load_settings(Role.WORKER, kube_env(worker_env)).worker_shutdown_grace
    assert spec["terminationGracePeriodSeconds"] > grace


def test_services_budgets_and_autoscaler_point_at_the_deployments() -> None:
    api_labels = kube("Deployment", "pixelflow-api")["spec"]["template"]["metadata"]["labels"]
    (api,) = containers(kube("Deployment", "pixelflow-api"))
    service = kube("Service", "pixelflow-api")["spec"]
    assert service["selector"].items() <= api_labels.items()
    assert {p["targetPort"] for p in service["ports"]} <= {p["name"] for p in api["ports"]}
    for document in kube_documents():
        if document["kind"] == "PodDisruptionBudget":
            target = kube("Deployment", document["metadata"]["name"])
            labels = target["spec"]["template"]["metadata"]["labels"]
            assert document["spec"]["selector"]["matchLabels"].items() <= labels.items()
            assert document["spec"]["minAvailable"] < target["spec"]["replicas"]
    hpa = kube("HorizontalPodAutoscaler", "pixelflow-worker")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "pixelflow-worker",
    }
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]


def test_kubernetes_env_is_documented_and_accepted_by_every_role() -> None:
    names = set(kube_env())
    for workload in ("pixelflow-api", "pixelflow-worker"):
        for container in containers(kube("Deployment", workload)):
            names |= {item["name"] for item in container.get("env", [])}
    assert names - documented() == set()
    (worker,) = containers(kube("Deployment", "pixelflow-worker"))
    worker_env = {item["name"]: item["value"] for item in worker["env"]}
    load_settings(Role.API, kube_env())
    load_settings(Role.WORKER, kube_env(worker_env))
    load_settings(Role.MIGRATE, kube_env())


# -- compose -------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(interpolate(COMPOSE.read_text()))
    return loaded


def test_compose_runs_the_whole_production_stack_from_one_image() -> None:
    services = compose()["services"]
    assert set(services) >= {
        "postgres",
        "redis",
        "minio",
        "createbucket",
        "migrate",
        "api",
        "worker",
    }
    ours = [services[name] for name in ("migrate", "api", "worker")]
    assert len({(s["image"], str(s["build"])) for s in ours}) == 1
    assert [s["command"] for s in ours] == [["migrate"], ["api"], ["worker"]]
    for name in ("postgres", "redis", "minio", "api", "worker"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}
        assert depends["createbucket"] == {"condition": "service_completed_successfully"}
        assert depends["redis"] == {"condition": "service_healthy"}
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    bucket = services["createbucket"]["command"][0]
    assert "mc mb --ignore-existing" in bucket


def test_compose_health_checks_probe_the_ports_the_processes_listen_on() -> None:
    services = compose()["services"]
    for name, variable in (("api", "PIXELFLOW_API_ADDR"), ("worker", "WORKER_METRICS_ADDR")):
        address = parse_address(variable, services[name]["environment"][variable])
        assert address is not None
        probe = " ".join(services[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{address.port}/readyz" in probe, probe


def test_compose_variables_are_documented_secrets_required_and_config_valid() -> None:
    text = COMPOSE.read_text()
    assert references(text) - documented() == set()
    # Secrets have no defaults: compose refuses to start without them.
    for secret in ("POSTGRES_PASSWORD", "AWS_SECRET_ACCESS_KEY"):
        assert re.search(rf"\$\{{{secret}:\?", text), secret
        assert not re.search(rf"\$\{{{secret}:-", text), secret
    # api_key mode (compose's default) signs with per-user secrets: the shared one is optional,
    # but never given a default value.
    assert "${WEBHOOK_SIGNING_SECRET:-}" in text
    assert not re.search(r"\$\{WEBHOOK_SIGNING_SECRET:-[^}]", text)
    services = compose()["services"]
    for name, role in (("api", Role.API), ("worker", Role.WORKER), ("migrate", Role.MIGRATE)):
        env = {key: str(value) for key, value in services[name]["environment"].items()}
        assert set(env) - documented() == set(), name
        load_settings(role, env)


# -- Containerfile -------------------------------------------------------------------------------


def test_containerfile_builds_in_one_stage_and_runs_pixelflow_as_non_root_from_another() -> None:
    text = CONTAINERFILE.read_text()
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    assert len(stages) == 2, "a build stage and a runtime stage"
    final = stages[-1]
    assert re.search(r"^COPY --from=build ", final, re.MULTILINE)
    assert f"USER {IMAGE_USER}" in final
    assert 'ENTRYPOINT ["pixelflow"]' in final
    assert re.search(r'^CMD \["api"\]', final, re.MULTILINE)
    for tool in ("gcc", "build-essential", "libvips", "pip install"):
        assert tool not in final, f"{tool} in the runtime image"
    # libvips comes from the pyvips wheel, not from the system.
    assert '"pyvips[binary]' in (REPO / "pyproject.toml").read_text()
