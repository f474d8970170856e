"""What the monitoring tests read: deploy/monitoring's alert rules and dashboard, and the metric
names their expressions use (tests/deploy/test_monitoring.py, tests/e2e/test_metrics.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tests.deploy.common import ROOT
from tests.deploy.kustomize import load_documents

MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARD = MONITORING / "dashboards" / "checkout.json"
ALERTS = MONITORING / "alerts.yaml"
# Ours, and the process collector's (shared/metrics.py); `up`, `rabbitmq_*` and `kube_*` come from
# Prometheus itself, the broker and kube-state-metrics.
METRIC_NAME = re.compile(r"\b(?:commerce|process)_[a-z_]+\b")


def alert_rules() -> dict[str, Any]:
    (rule,) = [doc for doc in load_documents(ALERTS) if doc["kind"] == "PrometheusRule"]
    return rule


def alerts() -> Iterator[dict[str, Any]]:
    for group in alert_rules()["spec"]["groups"]:
        yield from group["rules"]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries() -> list[str]:
    """Every PromQL query of the dashboard: its panels' targets and its variables'."""
    board = dashboard()
    queries = [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]
    queries += [variable["definition"] for variable in board["templating"]["list"] if variable["type"] == "query"]
    return queries


def metric_names(expressions: list[str]) -> set[str]:
    return {name for expression in expressions for name in METRIC_NAME.findall(expression)}
