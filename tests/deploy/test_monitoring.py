"""deploy/monitoring: the alert rules pass promtool and fire on the series they are about, every
alert is documented, the dashboard covers the checkout with valid queries, and the production
overlay carries the PodMonitor, the rules and the dashboard.

That every metric they name is one the services expose is checked against the running services
(tests/e2e/test_metrics.py). promtool comes with Debian's `prometheus` package (.ci/run installs it).
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.common import ROOT, SERVICES
from tests.deploy.kustomize import render
from tests.deploy.monitoring import DASHBOARD, alert_rules, alerts, dashboard, dashboard_queries

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian package prometheus)")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)


def write_rules(folder: Path, spec: dict[str, Any], *, annotations: bool = True) -> Path:
    """The PrometheusRule's spec as a plain rules file, what promtool reads."""
    spec = copy.deepcopy(spec)
    if not annotations:
        for group in spec["groups"]:
            for rule in group["rules"]:
                rule.pop("annotations", None)
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


# --- the alert rules ---------------------------------------------------------------------------------


@needs_promtool
def test_promtool_accepts_the_alert_rules(tmp_path: Path) -> None:
    checked = promtool("check", "rules", str(write_rules(tmp_path, alert_rules()["spec"])))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(list(alerts()))} rules found" in checked.stdout


@needs_promtool
def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    spec = copy.deepcopy(alert_rules()["spec"])
    spec["groups"][0]["rules"][0]["expr"] = "sum by (service) (rate(commerce_http_request_duration_seconds_count[5m])"
    checked = promtool("check", "rules", str(write_rules(tmp_path, spec)))
    assert checked.returncode != 0


def _count(name: str, **labels: str) -> str:
    return name + "{" + ", ".join(f'{key}="{value}"' for key, value in labels.items()) + "}"


HTTP = "commerce_http_request_duration_seconds_count"
EVENTS = "commerce_event_handling_duration_seconds_count"
RPC = "commerce_rpc_call_duration_seconds_count"
# (alert, input series (promtool's expanding notation, one sample a minute), when, the alerts
# expected then: their labels besides alertname). Each case has a series that must not alert.
CASES: list[tuple[str, list[tuple[str, str]], str, list[dict[str, str]]]] = [
    (
        "CommerceHttp5xx",
        [
            # The gateway: half of 2 requests/s fail. Basket: half of 2 requests/min, too few to page.
            (_count(HTTP, service="gateway", route="/api/v1/orders/process", method="POST", status="503"), "0+60x20"),
            (_count(HTTP, service="gateway", route="/api/v1/orders/process", method="POST", status="200"), "0+60x20"),
            (_count(HTTP, service="basket", route="/baskets", method="POST", status="500"), "0+1x20"),
            (_count(HTTP, service="basket", route="/baskets", method="POST", status="200"), "0+1x20"),
        ],
        "15m",
        [{"service": "gateway", "severity": "page"}],
    ),
    (
        "CommerceCheckoutStalled",
        [(_count("commerce_checkout_started_total", service="orders"), "0+5x30")],
        "20m",
        [{"severity": "page"}],
    ),
    (
        "CommerceCheckoutStalled",
        [
            (_count("commerce_checkout_started_total", service="orders"), "0+5x30"),
            (_count("commerce_checkout_duration_seconds_count", service="orders", outcome="placed"), "0+5x30"),
        ],
        "20m",
        [],
    ),
    (
        "CommerceCheckoutTimedOut",
        [
            (_count("commerce_checkout_duration_seconds_count", service="orders", outcome="timed_out"), "0 0 1x10"),
            (_count("commerce_checkout_duration_seconds_count", service="orders", outcome="placed"), "0+5x10"),
        ],
        "5m",
        [{"severity": "warning"}],
    ),
    (
        "CommerceOutboxStale",
        [
            (_count("commerce_outbox_oldest_seconds", service="orders", pod="orders-a"), "0 120x20"),
            (_count("commerce_outbox_oldest_seconds", service="basket", pod="basket-a"), "0x20"),
        ],
        "10m",
        [{"service": "orders", "severity": "page"}],
    ),
    (
        "CommerceMetricsProbeFailing",
        [
            (_count("commerce_scrape_probe_success", service="orders", probe="outbox"), "0x10"),
            (_count("commerce_scrape_probe_success", service="orders", probe="dlq"), "1x10"),
        ],
        "6m",
        [{"service": "orders", "probe": "outbox", "severity": "warning"}],
    ),
    (
        "CommerceEventsParked",
        [
            (_count(EVENTS, service="payments", event="order.charge_requested.v1", outcome="parked"), "0 0 1x10"),
            (_count(EVENTS, service="payments", event="order.charge_requested.v1", outcome="handled"), "0+9x10"),
        ],
        "5m",
        [{"service": "payments", "event": "order.charge_requested.v1", "outcome": "parked", "severity": "ticket"}],
    ),
    (
        "CommerceRpcFailing",
        [
            (_count(RPC, service="orders", request="basket.snapshot", outcome="ok"), "0+60x20"),
            (_count(RPC, service="orders", request="basket.snapshot", outcome="timeout"), "0+10x20"),
            (_count(RPC, service="orders", request="shipping.quote", outcome="ok"), "0+60x20"),
        ],
        "15m",
        [{"service": "orders", "request": "basket.snapshot", "severity": "warning"}],
    ),
    (
        "CommerceDbPoolSaturated",
        [
            (_count("commerce_db_pool_connections", service="orders", pod="orders-a", state="in_use"), "10x20"),
            (_count("commerce_db_pool_max_connections", service="orders", pod="orders-a"), "10x20"),
            (_count("commerce_db_pool_connections", service="orders", pod="orders-b", state="in_use"), "2x20"),
            (_count("commerce_db_pool_max_connections", service="orders", pod="orders-b"), "10x20"),
        ],
        "15m",
        [{"service": "orders", "pod": "orders-a", "severity": "warning"}],
    ),
]


@needs_promtool
def test_the_alerts_fire_on_the_series_they_are_about_and_only_on_them(tmp_path: Path) -> None:
    write_rules(tmp_path, alert_rules()["spec"], annotations=False)
    tests = [
        {
            "interval": "1m",
            "input_series": [{"series": series, "values": values} for series, values in series_list],
            "alert_rule_test": [
                {"eval_time": when, "alertname": alert, "exp_alerts": [{"exp_labels": labels} for labels in expected]}
            ],
        }
        for alert, series_list, when, expected in CASES
    ]
    unit = tmp_path / "alerts_test.yaml"
    unit.write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}))
    tested = promtool("test", "rules", str(unit))
    assert tested.returncode == 0, tested.stdout + tested.stderr


@needs_promtool
def test_an_alert_reads_its_labels_and_value_into_its_summary(tmp_path: Path) -> None:
    write_rules(tmp_path, alert_rules()["spec"])
    (rule,) = [rule for rule in alerts() if rule.get("alert") == "CommerceDeadLetters"]
    dlq = "commerce.orders.dlq"
    test = {
        "interval": "1m",
        "input_series": [
            {
                "series": _count("commerce_dlq_depth", service="orders", queue="commerce.orders.dlq"),
                "values": "0 0 3x10",
            }
        ],
        "alert_rule_test": [
            {
                "eval_time": "5m",
                "alertname": "CommerceDeadLetters",
                "exp_alerts": [
                    {
                        "exp_labels": {"service": "orders", "queue": dlq, "severity": "ticket"},
                        "exp_annotations": {
                            "summary": f"{dlq}: 3 messages parked",
                            "description": rule["annotations"]["description"],
                        },
                    }
                ],
            }
        ],
    }
    unit = tmp_path / "alerts_test.yaml"
    unit.write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [test]}))
    tested = promtool("test", "rules", str(unit))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_severity_a_summary_and_its_entry_in_the_operations_guide() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names))
    for rule in alerts():
        assert rule["labels"]["severity"] in {"page", "warning", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert f"`{rule['alert']}`" in guide, f"{rule['alert']} is not explained in docs/operations.md"


# --- the dashboard -----------------------------------------------------------------------------------


def test_the_dashboard_is_a_grafana_dashboard_of_prometheus_queries() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"] == panel["datasource"], panel["title"]


def _panel_using(*fragments: str) -> list[str]:
    return [
        panel["title"]
        for panel in dashboard()["panels"]
        if any(all(fragment in target["expr"] for fragment in fragments) for target in panel.get("targets", []))
    ]


@pytest.mark.parametrize(
    "fragments",
    [
        # The checkout funnel: started, reserved, placed.
        ("commerce_checkout_started_total",),
        ('commerce_checkout_stage_duration_seconds_count{stage="reservation", outcome="reserved"}',),
        ('commerce_checkout_duration_seconds_count{outcome="placed"}',),
        # Saga stage latencies.
        ("histogram_quantile", "commerce_checkout_stage_duration_seconds_bucket", "stage"),
        # Error rates by service and route.
        ('status=~"5.."', "by (service, route)"),
        # Outbox lag, DLQ depth, pool saturation.
        ("commerce_outbox_oldest_seconds",),
        ("commerce_dlq_depth",),
        ('commerce_db_pool_connections{service=~"$service", state="in_use"}', "commerce_db_pool_max_connections"),
    ],
    ids=["started", "reserved", "placed", "stages", "errors", "outbox", "dlq", "pool"],
)
def test_the_dashboard_shows(fragments: tuple[str, ...]) -> None:
    assert _panel_using(*fragments), f"no panel queries {fragments}"


# Grafana's variables, as Prometheus would see them once Grafana replaced them.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$service": ".*"}


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    rules = []
    for index, query in enumerate(q for q in dashboard_queries() if not q.startswith("label_values(")):
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        assert "$" not in query, f"a Grafana variable the test does not know: {query}"
        rules.append({"record": f"dashboard:query_{index}", "expr": query})
    checked = promtool(
        "check", "rules", str(write_rules(tmp_path, {"groups": [{"name": "dashboard", "rules": rules}]}))
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_variables_query_a_label_the_metrics_have() -> None:
    (definition,) = [q for q in dashboard_queries() if q.startswith("label_values(")]
    assert re.fullmatch(r"label_values\(commerce_\w+, service\)", definition)


# --- wiring ------------------------------------------------------------------------------------------


def _production(kind: str, name: str) -> dict[str, Any]:
    found = [o for o in render(ROOT / "deploy" / "production") if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def test_production_scrapes_every_service_pod_and_no_migration_job() -> None:
    monitor = _production("PodMonitor", "commerce-services")
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    objects = render(ROOT / "deploy" / "production")
    for obj in objects:
        if obj["kind"] not in {"Deployment", "Job"}:
            continue
        labels = obj["spec"]["template"]["metadata"]["labels"]
        scraped = all(labels.get(key) == value for key, value in selector.items())
        assert scraped == (obj["kind"] == "Deployment"), obj["metadata"]["name"]
        if scraped:
            ports = [port["name"] for port in obj["spec"]["template"]["spec"]["containers"][0]["ports"]]
            assert endpoint["port"] in ports
    scraped_services = {
        obj["metadata"]["name"]
        for obj in objects
        if obj["kind"] == "Deployment"
        and all(obj["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())
    }
    assert scraped_services == set(SERVICES)


def test_production_carries_the_alert_rules_and_the_dashboard() -> None:
    assert _production("PrometheusRule", "commerce-alerts")["spec"] == alert_rules()["spec"]
    config_map = _production("ConfigMap", "commerce-dashboards")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["data"] == {"checkout.json": DASHBOARD.read_text()}
