"""deploy/: every manifest validates against its schema, and the objects fit together.

Kustomizations are rendered by tests/deploy/kustomize.py (no kustomize binary here); built-in
kinds are validated with kubernetes-validate's bundled schemas (strict: unknown fields fail),
custom resources with the subsets in tests/deploy/schemas/crds.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from functools import cache
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml

from tests.deploy.common import (
    MIGRATING,
    PORTS,
    ROOT,
    SCHEMAS,
    SERVICES,
    SHUTDOWN_MARGIN,
    drain_after_http,
    env_prefix,
    longest_request,
    unknown_settings,
)
from tests.deploy.kustomize import load_documents, object_id, pod_specs, render

DEPLOY = ROOT / "deploy"
OVERLAYS = ("base", "production")
EXAMPLES = sorted(p.name for p in (DEPLOY / "examples").glob("*.yaml"))
# The oldest Kubernetes the manifests support (PDB policy/v1, HPA autoscaling/v2, Job TTL are
# all GA by then) and the newest the bundled schemas know.
K8S_VERSIONS = (
    next(v for v in kubernetes_validate.utils.all_versions() if tuple(map(int, v.split(".")[:2])) >= (1, 27)),
    kubernetes_validate.utils.latest_version(),
)
RESTRICTED_VOLUMES = {"emptyDir", "configMap", "secret", "projected", "downwardAPI", "persistentVolumeClaim"}


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(DEPLOY / overlay))


def objects(overlay: str) -> list[dict[str, Any]]:
    return copy.deepcopy(list(rendered(overlay)))


def find(overlay: str, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in rendered(overlay) if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{overlay}: {kind}/{name} found {len(found)} times"
    return found[0]


@cache
def crd_schema(kind: str, api_version: str) -> dict[str, Any] | None:
    path = SCHEMAS / "crds" / f"{kind.lower()}-{api_version.replace('/', '-')}.json"
    return json.loads(path.read_text()) if path.exists() else None


@cache
def k8s_validator(kind: str, api_version: str, version: str) -> jsonschema.Draft202012Validator:
    """kubernetes_validate.validate(strict=True), with the schemas parsed once per kind and version.

    (It re-reads the 2 MB definitions file on every call; this keeps its lookup rules.)
    """
    utils = kubernetes_validate.utils
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = utils.schema_contents(f"{folder}/{kind.lower()}-{group_version}.json", version)
    except FileNotFoundError as exc:
        raise kubernetes_validate.SchemaNotFoundError(version=version, kind=kind, api_version=api_version) from exc
    registry = referencing.Resource.from_contents(schema) @ referencing.Registry()
    registry = (
        referencing.Resource.from_contents(utils.schema_contents(f"{folder}/_definitions.json", version)) @ registry
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate(obj: dict[str, Any], version: str) -> None:
    schema = crd_schema(obj["kind"], obj["apiVersion"])
    if schema is not None:
        jsonschema.Draft202012Validator(schema).validate(obj)
    else:
        k8s_validator(obj["kind"], obj["apiVersion"], version).validate(obj)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


# --- schemas ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("source", [*OVERLAYS, *(f"examples/{e}" for e in EXAMPLES)])
def test_every_manifest_validates_against_its_schema(source: str, version: str) -> None:
    docs = objects(source) if source in OVERLAYS else load_documents(DEPLOY / source)
    assert docs
    for obj in docs:
        try:
            validate(obj, version)
        except jsonschema.ValidationError as exc:
            pytest.fail(f"{source}: {object_id(obj)} is invalid for Kubernetes {version}: {exc}")
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{source}: no schema for {object_id(obj)}: add a subset to tests/deploy/schemas/crds")


def test_validation_rejects_typos() -> None:
    deployment = copy.deepcopy(find("production", "Deployment", "orders"))
    container(deployment)["readinesProbe"] = container(deployment).pop("readinessProbe")
    with pytest.raises(jsonschema.ValidationError, match="readinesProbe"):
        validate(deployment, K8S_VERSIONS[0])
    cluster = copy.deepcopy(find("production", "RabbitmqCluster", "commerce-rabbitmq"))
    cluster["spec"]["replica"] = cluster["spec"].pop("replicas")
    with pytest.raises(jsonschema.ValidationError, match="replica"):
        validate(cluster, K8S_VERSIONS[0])


def test_every_kustomization_renders() -> None:
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        assert render(kustomization.parent), kustomization


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed (optional cross-check)")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_renderer_agrees_with_kubectl_kustomize(overlay: str) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / overlay)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    theirs = {object_id(o): o for o in yaml.safe_load_all(out) if o}
    ours = {object_id(o): o for o in rendered(overlay)}
    assert ours == theirs


# --- per service -----------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_its_objects(overlay: str) -> None:
    have = {(o["kind"], o["metadata"]["name"]) for o in rendered(overlay)}
    for service in SERVICES:
        for kind in ("Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
            assert (kind, service if kind != "ConfigMap" else f"{service}-config") in have, (kind, service)
        assert (("Job", f"{service}-migrate") in have) == (service in MIGRATING)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_deployment_probes_resources_and_hardening(overlay: str, service: str) -> None:
    deployment = find(overlay, "Deployment", service)
    assert "replicas" not in deployment["spec"], "the HorizontalPodAutoscaler owns the replica count"
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    main = container(deployment)
    assert main["ports"] == [{"name": "http", "containerPort": PORTS[service], "protocol": "TCP"}]
    assert main["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert main["startupProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    for kind in ("requests", "limits"):
        assert set(main["resources"][kind]) == {"cpu", "memory"}, kind
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(PORTS[service])
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_the_grace_period_covers_pre_stop_and_the_whole_drain(overlay: str, service: str) -> None:
    deployment = find(overlay, "Deployment", service)
    config = find(overlay, "ConfigMap", f"{service}-config")["data"]
    pre_stop = container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep" and float(pre_stop[1]) >= 3, "endpoints need a moment to drop the pod"
    shutdown = float(config[f"{env_prefix(service)}SHUTDOWN_TIMEOUT"])
    assert shutdown > longest_request(service), f"{service}: the drain would cut in-flight requests"
    budget = float(pre_stop[1]) + shutdown + drain_after_http(service) + SHUTDOWN_MARGIN
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= budget


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_configuration_names_real_settings(overlay: str, service: str) -> None:
    config = find(overlay, "ConfigMap", f"{service}-config")["data"]
    assert unknown_settings(service, list(config)) == []
    assert config[f"{env_prefix(service)}HOST"] == "0.0.0.0"
    assert config[f"{env_prefix(service)}PORT"] == str(PORTS[service])
    workloads = [find(overlay, "Deployment", service)]
    if service in MIGRATING:
        workloads.append(find(overlay, "Job", f"{service}-migrate"))
    for workload in workloads:
        for spec in pod_specs(workload):
            for item in spec["containers"]:
                names = [env["name"] for env in item.get("env", [])]
                assert unknown_settings(service, names) == []
                refs = [ref["configMapRef"]["name"] for ref in item.get("envFrom", [])]
                assert refs in ([], [f"{service}-config"])


def _secret_refs(overlay: str) -> set[tuple[str, str]]:
    refs = set()
    for obj in rendered(overlay):
        for spec in pod_specs(obj):
            for item in spec["containers"]:
                for env in item.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        refs.add((ref["name"], ref["key"]))
    return refs


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_secret_reference_is_documented_in_the_example_secrets(overlay: str) -> None:
    examples = {
        (doc["metadata"]["name"], key)
        for doc in load_documents(DEPLOY / "examples" / "secrets.yaml")
        for key in doc.get("stringData", {})
    }
    refs = _secret_refs(overlay)
    assert refs - examples == set()
    expected = {
        ("gateway-auth", "admin-jwt-secret"),
        ("commerce-identity", "identity-signing-key"),
        ("commerce-customer-token", "customer-token-secret"),
    }
    for service in MIGRATING:
        expected |= {
            (f"{service}-runtime", "database-url"),
            (f"{service}-runtime", "amqp-url"),
            (f"{service}-migrate", "migrate-database-url"),
        }
    assert refs == expected


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_migration_job_holds_the_migration_dsn(overlay: str) -> None:
    for service in MIGRATING:
        deployment_env = {env["name"] for env in container(find(overlay, "Deployment", service)).get("env", [])}
        assert f"{env_prefix(service)}MIGRATE_DATABASE_URL" not in deployment_env
        assert f"{env_prefix(service)}DATABASE_URL" in deployment_env


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_pdbs_and_hpas_target_exactly_their_deployment(overlay: str) -> None:
    pod_labels = {
        object_id(o): o["spec"]["template"]["metadata"]["labels"]
        for o in rendered(overlay)
        if o["kind"] in {"Deployment", "Job"}
    }
    for service in SERVICES:
        deployment = find(overlay, "Deployment", service)
        selector = deployment["spec"]["selector"]["matchLabels"]
        svc = find(overlay, "Service", service)
        pdb = find(overlay, "PodDisruptionBudget", service)
        for chooser in (svc["spec"]["selector"], pdb["spec"]["selector"]["matchLabels"], selector):
            chosen = [key for key, labels in pod_labels.items() if _selects(chooser, labels)]
            assert chosen == [object_id(deployment)], (service, chooser, chosen)
        assert svc["spec"]["ports"] == [
            {"name": "http", "port": PORTS[service], "targetPort": "http", "protocol": "TCP"}
        ]
        assert pdb["spec"]["maxUnavailable"] == 1
        hpa = find(overlay, "HorizontalPodAutoscaler", service)
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", MIGRATING)
def test_the_migration_job_runs_the_same_image_once(overlay: str, service: str) -> None:
    job = find(overlay, "Job", f"{service}-migrate")
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    (migrate,) = spec["containers"]
    assert migrate["command"] == ["python", "-m", service, "migrate"]
    assert migrate["image"] == container(find(overlay, "Deployment", service))["image"]
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "migrate"
    assert job["spec"]["backoffLimit"] >= 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_reaches_each_service_through_its_service_object(overlay: str) -> None:
    config = find(overlay, "ConfigMap", "gateway-config")["data"]
    for service in MIGRATING:
        port = find(overlay, "Service", service)["spec"]["ports"][0]["port"]
        assert config[f"GATEWAY_{service.upper()}_URL"] == f"http://{service}:{port}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_meets_the_restricted_pod_security_standard(overlay: str) -> None:
    for obj in rendered(overlay):
        for spec in pod_specs(obj):
            name = object_id(obj)
            assert spec["securityContext"]["runAsNonRoot"] is True, name
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert spec.get("automountServiceAccountToken") is False, name
            assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), name
            for volume in spec.get("volumes", []):
                assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, (name, volume)
            for item in spec["containers"] + spec.get("initContainers", []):
                security = item["securityContext"]
                assert security["allowPrivilegeEscalation"] is False, name
                assert security["capabilities"] == {"drop": ["ALL"]}, name
                assert not security.get("privileged", False), name
                assert security["readOnlyRootFilesystem"] is True, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_the_images_user(overlay: str) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")][-1]
    uid, _, gid = user.partition(":")
    for service in SERVICES:
        for obj in rendered(overlay):
            if obj["metadata"]["name"] in {service, f"{service}-migrate"} and pod_specs(obj):
                context = pod_specs(obj)[0]["securityContext"]
                assert (context["runAsUser"], context["runAsGroup"]) == (int(uid), int(gid)), object_id(obj)


# --- the broker and production -----------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rabbitmq_is_a_three_node_cluster_that_keeps_its_majority(overlay: str) -> None:
    cluster = find(overlay, "RabbitmqCluster", "commerce-rabbitmq")
    assert cluster["spec"]["replicas"] == 3
    anti = cluster["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    assert "cluster_partition_handling = pause_minority" in cluster["spec"]["rabbitmq"]["additionalConfig"]
    pdb = find(overlay, "PodDisruptionBudget", "commerce-rabbitmq")
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "commerce-rabbitmq"}},
    }


def test_production_pins_images_namespace_and_sizes() -> None:
    production = rendered("production")
    for obj in production:
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == "commerce"
            assert obj["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        else:
            assert obj["metadata"]["namespace"] == "commerce", object_id(obj)
        for spec in pod_specs(obj):
            for item in spec["containers"]:
                name, _, tag = item["image"].rpartition(":")
                assert name.startswith("registry.example.com/commerce/") and tag and tag != "latest", item["image"]
    for service in SERVICES:
        assert find("production", "HorizontalPodAutoscaler", service)["spec"]["minReplicas"] >= 3
        resources = container(find("production", "Deployment", service))["resources"]
        assert resources["requests"]["memory"] == resources["limits"]["memory"], "no memory overcommit"
    assert find("production", "RabbitmqCluster", "commerce-rabbitmq")["spec"]["persistence"]["storage"] == "50Gi"


def test_production_exposes_only_the_api_and_its_docs() -> None:
    ingress = find("production", "Ingress", "gateway")
    (rule,) = ingress["spec"]["rules"]
    paths = {(p["path"], p["pathType"]): p["backend"]["service"] for p in rule["http"]["paths"]}
    assert paths == {
        ("/api/v1", "Prefix"): {"name": "gateway", "port": {"name": "http"}},
        ("/docs", "Prefix"): {"name": "gateway", "port": {"name": "http"}},
    }
    config = find("production", "ConfigMap", "gateway-config")["data"]
    assert json.loads(config["GATEWAY_TRUSTED_PROXIES"]) and json.loads(config["GATEWAY_CORS_ORIGINS"])


def test_the_cnpg_example_gives_each_runtime_role_a_password_secret() -> None:
    (cluster,) = [d for d in load_documents(DEPLOY / "examples" / "postgres-cnpg.yaml") if d["kind"] == "Cluster"]
    roles = {role["name"]: role for role in cluster["spec"]["managed"]["roles"]}
    secrets = {d["metadata"]["name"]: d for d in load_documents(DEPLOY / "examples" / "secrets.yaml")}
    for service in MIGRATING:
        role = roles[f"{service}_app"]
        assert role["login"] is True
        secret = secrets[role["passwordSecret"]["name"]]
        assert secret["type"] == "kubernetes.io/basic-auth"
        assert secret["stringData"]["username"] == f"{service}_app"
        assert f"//{service}_app:" in secrets[f"{service}-runtime"]["stringData"]["database-url"]


def test_examples_are_not_part_of_any_kustomization() -> None:
    """Secrets with placeholder values must never be applied by `kubectl apply -k`."""
    for overlay in OVERLAYS:
        assert not any(o["kind"] == "Secret" for o in rendered(overlay))
    assert not (DEPLOY / "examples" / "kustomization.yaml").exists()


def test_paths_in_docs_exist() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    for path in ("deploy/base", "deploy/production", "deploy/examples/secrets.yaml", "docker-compose.yml"):
        assert path in guide
        assert (ROOT / path).exists()


# --- production mode and network policies (issue 17) -------------------------------------------------


def _policy_for(overlay: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    """The NetworkPolicies whose podSelector selects pods with these labels."""
    found = []
    for obj in rendered(overlay):
        if obj["kind"] != "NetworkPolicy":
            continue
        selector = obj["spec"]["podSelector"]
        assert "matchExpressions" not in selector, object_id(obj)
        if _selects(selector.get("matchLabels", {}), labels):
            found.append(obj)
    return found


def _peer_selects(peer: dict[str, Any], labels: dict[str, str], namespace: str | None = None) -> bool:
    """Whether a policy peer admits pods with `labels` in `namespace` (None: the policy's own)."""
    if "ipBlock" in peer:
        return False
    ns_selector = peer.get("namespaceSelector")
    if ns_selector is None and namespace is not None:
        return False
    if ns_selector is not None:
        if namespace is None or ns_selector.get("matchLabels") != {"kubernetes.io/metadata.name": namespace}:
            return False
    pod_selector = peer.get("podSelector", {})
    for expression in pod_selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return _selects(pod_selector.get("matchLabels", {}), labels)


def _admitted(policy: dict[str, Any], labels: dict[str, str], namespace: str | None = None) -> set[Any]:
    """The ports (or "all") the policy opens to pods with `labels`."""
    ports: set[Any] = set()
    for rule in policy["spec"].get("ingress", []):
        assert rule.get("from"), f"{object_id(policy)}: a rule without `from` admits everyone"
        if any(_peer_selects(peer, labels, namespace) for peer in rule["from"]):
            ports |= {port["port"] for port in rule.get("ports", [])} or {"all"}
    return ports


def _pod_labels(overlay: str, kind: str, name: str) -> dict[str, str]:
    return find(overlay, kind, name)["spec"]["template"]["metadata"]["labels"]


PROMETHEUS = {"app.kubernetes.io/name": "prometheus"}


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_is_reached_only_by_the_gateway_and_prometheus(overlay: str, service: str) -> None:
    (policy,) = _policy_for(overlay, _pod_labels(overlay, "Deployment", service))
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    # Prometheus, from the monitoring namespace, on the port that serves /metrics.
    assert _admitted(policy, PROMETHEUS, "monitoring") == {"http"}
    assert _admitted(policy, PROMETHEUS, "other") == set()
    others = [s for s in SERVICES if s != service]
    if service == "gateway":
        assert _admitted(policy, {"app.kubernetes.io/name": "controller"}, "ingress-nginx") == {"http"}
    else:
        assert _admitted(policy, _pod_labels(overlay, "Deployment", "gateway")) == {"http"}
        others.remove("gateway")
    for other in others:
        assert _admitted(policy, _pod_labels(overlay, "Deployment", other)) == set(), other
    for migrating in MIGRATING:
        assert _admitted(policy, _pod_labels(overlay, "Job", f"{migrating}-migrate")) == set()
    assert _admitted(policy, {"app": "anything"}) == set()


def _egress(policy: dict[str, Any], labels: dict[str, str] | None, namespace: str | None = None) -> set[Any]:
    """The ports the policy's rules with a destination open to pods with `labels` in `namespace`
    (None: the policy's own), or to an address outside the cluster (`labels` None)."""
    ports: set[Any] = set()
    for rule in policy["spec"].get("egress", []):
        peers = rule.get("to")
        if peers is None:
            continue  # `_anywhere`
        if labels is None:
            admitted = any("ipBlock" in peer for peer in peers)
        else:
            admitted = any(_peer_selects(peer, labels, namespace) for peer in peers)
        if admitted:
            ports |= {port["port"] for port in rule.get("ports", [])} or {"all"}
    return ports


def _anywhere(policy: dict[str, Any]) -> set[Any]:
    """The ports the policy opens to any destination (rules without `to`)."""
    ports: set[Any] = set()
    for rule in policy["spec"].get("egress", []):
        if rule.get("to") is None:
            assert rule.get("ports"), f"{object_id(policy)}: an egress rule without `to` or ports opens everything"
            ports |= {port["port"] for port in rule["ports"]}
    return ports


DNS = {"k8s-app": "kube-dns"}
RABBITMQ = {"app.kubernetes.io/name": "commerce-rabbitmq"}


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_reaches_only_what_it_talks_to(overlay: str, service: str) -> None:
    (policy,) = _policy_for(overlay, _pod_labels(overlay, "Deployment", service))
    assert _egress(policy, DNS, "kube-system") == {53}
    others = {s: _pod_labels(overlay, "Deployment", s) for s in SERVICES if s != service}
    if service == "gateway":
        for other, labels in others.items():
            assert _egress(policy, labels) == {"http"}, other
        assert _egress(policy, RABBITMQ) == set()
        assert _egress(policy, None) == set()
        assert _anywhere(policy) == set()
        return
    for other, labels in others.items():
        assert _egress(policy, labels) == set(), other
    assert _egress(policy, RABBITMQ) == {5672}
    # Postgres may be in the cluster or a managed database outside it: its port, anywhere.
    assert _anywhere(policy) == {5432}
    # Outside the cluster otherwise: HTTPS for payments' card processor only.
    assert _egress(policy, None) == ({443} if service == "payments" else set())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_services_reach_rabbitmq(overlay: str) -> None:
    (policy,) = _policy_for(overlay, {"app.kubernetes.io/name": "commerce-rabbitmq"})
    for service in MIGRATING:
        assert 5672 in _admitted(policy, _pod_labels(overlay, "Deployment", service)), service
    assert _admitted(policy, _pod_labels(overlay, "Deployment", "gateway")) == set()
    for service in MIGRATING:
        assert _admitted(policy, _pod_labels(overlay, "Job", f"{service}-migrate")) == set()
    assert _admitted(policy, {"app": "anything"}) == set()


def test_only_the_services_and_their_migrations_reach_the_example_postgres() -> None:
    (policy,) = [d for d in load_documents(DEPLOY / "examples" / "postgres-cnpg.yaml") if d["kind"] == "NetworkPolicy"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {"cnpg.io/cluster": "commerce-pg"}
    for service in MIGRATING:
        assert _admitted(policy, _pod_labels("base", "Deployment", service)) == {5432}, service
        assert _admitted(policy, _pod_labels("base", "Job", f"{service}-migrate")) == {5432}, service
    assert _admitted(policy, _pod_labels("base", "Deployment", "gateway")) == set()
    assert _admitted(policy, {"app": "anything"}) == set()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_runs_in_production_mode(overlay: str) -> None:
    for service in SERVICES:
        assert find(overlay, "ConfigMap", f"{service}-config")["data"]["COMMERCE_ENV"] == "production"
    assert find(overlay, "ConfigMap", "payments-config")["data"]["PAYMENTS_SANDBOX_ENABLED"] == "false"
    gateway = find(overlay, "ConfigMap", "gateway-config")["data"]
    assert gateway["GATEWAY_ADMIN_JWT_ISSUER"] and gateway["GATEWAY_ADMIN_JWT_AUDIENCE"]


def test_example_secrets_are_refused_in_production() -> None:
    """Every key in the example Secrets is a value production refuses to start with."""
    from shared.settings import KNOWN_DEV_SECRETS

    for doc in load_documents(DEPLOY / "examples" / "secrets.yaml"):
        for key, value in doc["stringData"].items():
            if key in {"admin-jwt-secret", "identity-signing-key", "customer-token-secret", "password"}:
                assert value in KNOWN_DEV_SECRETS, (doc["metadata"]["name"], key)
