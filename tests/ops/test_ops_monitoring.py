"""The shipped Grafana dashboard and Prometheus alert rules use only metrics the farm exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXPORTERS = (
    ROOT / "worker" / "metrics.py",
    ROOT / "comfyfarm" / "exporter.py",
    ROOT / "gateway" / "metrics.py",
)
SUFFIXES = ("", "_total", "_bucket", "_sum", "_count", "_created")
METRIC = re.compile(r"\bcomfyfarm_[a-z_]+\b")


def exported_names() -> set[str]:
    declared = {
        m for path in EXPORTERS for m in re.findall(r'"(comfyfarm_[a-z_]+)"', path.read_text())
    }
    return {name + suffix for name in declared for suffix in SUFFIXES}


def alert_rules() -> list[dict]:
    document = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "comfyfarm-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_alert_rules_are_complete_and_use_exported_metrics() -> None:
    """Worker down, ComfyUI down, queue growing and failure rate are alerted on, by known names."""
    rules = alert_rules()
    names = {rule["alert"] for rule in rules}
    assert {"ComfyfarmWorkerDown", "ComfyfarmComfyUIDown", "ComfyfarmQueueGrowing",
            "ComfyfarmFailureRate"} <= names  # fmt: skip
    for rule in rules:
        assert rule["expr"].strip() and rule["annotations"]["summary"]
        assert set(METRIC.findall(rule["expr"])) <= exported_names(), rule["alert"]


def test_dashboard_panels_use_exported_metrics() -> None:
    """Every panel query names only metrics that a worker or the exporter exports."""
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used and used <= exported_names(), used - exported_names()


def test_dashboard_has_gateway_panels() -> None:
    """Gateway requests, submits, latency and open streams each have a panel query."""
    used = {name for expr in dashboard_exprs() for name in METRIC.findall(expr)}
    assert {
        "comfyfarm_gateway_requests_total",
        "comfyfarm_gateway_submits_total",
        "comfyfarm_gateway_request_seconds_bucket",
        "comfyfarm_gateway_open_streams",
    } <= used
