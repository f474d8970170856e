"""Tracing in production: every service of docker-compose.yml exports to its collector, and the
Kubernetes example runs the same collector pipeline, reachable by the services only."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

import yaml

from shared import tracing
from tests.deploy.common import ROOT, SERVICES
from tests.deploy.kustomize import load_documents

COLLECTOR_CONFIG = ROOT / "deploy" / "otel-collector" / "config.yaml"
EXAMPLE = ROOT / "deploy" / "examples" / "otel-collector.yaml"
# Attributes the instrumentations may record from what a client sends: never kept.
CLIENT_SUPPLIED = {"http.user_agent", "user_agent.original", "url.query", "http.url", "http.target"}


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def pipeline(config: dict[str, Any]) -> tuple[Any, ...]:
    return config["receivers"], config["processors"], config["service"]["pipelines"]


def receiver_port(config: dict[str, Any]) -> int:
    return int(config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].rsplit(":", 1)[1])


def test_every_compose_service_sends_its_spans_to_the_collector_over_otlp_http() -> None:
    services = compose()["services"]
    config = yaml.safe_load(COLLECTOR_CONFIG.read_text())
    port = receiver_port(config)
    collector = services["otel-collector"]
    source, target, mode = collector["volumes"][0].split(":")
    assert (ROOT / source).resolve() == COLLECTOR_CONFIG and mode == "ro"
    assert collector["command"] == [f"--config={target}"]
    assert collector["expose"] == [str(port)] and "ports" not in collector
    for service in SERVICES:
        env = services[service]["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://otel-collector:{port}", service
        # What the service makes of it: the OTLP/HTTP exporter, which is installed.
        (name,) = tracing.exporter_names(env)
        assert entry_points(group="opentelemetry_traces_exporter", name=name), name
        # Nothing waits for the collector: without it, spans are dropped, never requests.
        assert "otel-collector" not in services[service].get("depends_on", {}), service


def test_the_collector_drops_what_clients_send_about_themselves() -> None:
    config = yaml.safe_load(COLLECTOR_CONFIG.read_text())
    deleted = {a["key"] for a in config["processors"]["attributes/scrub"]["actions"] if a["action"] == "delete"}
    assert deleted >= CLIENT_SUPPLIED
    assert "attributes/scrub" in config["service"]["pipelines"]["traces"]["processors"]


def test_the_kubernetes_example_runs_the_same_pipeline_reachable_from_the_services() -> None:
    documents = {(d["kind"], d["metadata"]["name"]): d for d in load_documents(EXAMPLE)}
    example = yaml.safe_load(documents["ConfigMap", "otel-collector"]["data"]["config.yaml"])
    assert pipeline(example) == pipeline(yaml.safe_load(COLLECTOR_CONFIG.read_text()))
    port = receiver_port(example)
    service = documents["Service", "otel-collector"]["spec"]
    pod = documents["Deployment", "otel-collector"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert service["ports"][0]["port"] == port and container_ports[service["ports"][0]["targetPort"]] == port
    assert service["selector"].items() <= pod["metadata"]["labels"].items()
    # The services' pods may send to it (their own policies allow only DNS, Postgres, the broker).
    services_pods = {"app.kubernetes.io/part-of": "commerce", "app.kubernetes.io/component": "service"}
    egress = documents["NetworkPolicy", "commerce-services-to-otel-collector"]["spec"]
    assert egress["podSelector"]["matchLabels"] == services_pods
    (rule,) = egress["egress"]
    assert rule["to"][0]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert rule["ports"] == [{"port": port, "protocol": "TCP"}]
    ingress = documents["NetworkPolicy", "otel-collector"]["spec"]
    assert ingress["ingress"][0]["from"] == [{"podSelector": {"matchLabels": services_pods}}]
