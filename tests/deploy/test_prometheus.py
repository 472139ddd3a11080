"""deploy/prometheus/smsbridge-rules.yml and deploy/grafana/smsbridge.json: the rules pass
Prometheus' own checker, and every metric their queries read is exported by a running bridge."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from smsbridge.chtsim import ChtSim
from smsbridge.loopback import wait_for
from tests.conftest import WEBHOOK_TOKENS, running_bridge
from tests.debian import program

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "smsbridge-rules.yml"
DASHBOARD = DEPLOY / "grafana" / "smsbridge.json"

# A metric name in PromQL: ours and the process collector's (`up` is Prometheus' own).
_METRIC = re.compile(r"\b((?:smsbridge|process)_[a-zA-Z0-9_]+)")


def test_the_alert_rules_pass_promtool() -> None:
    promtool = program("promtool", "prometheus")
    done = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_would_catch_a_broken_rule(tmp_path: Path) -> None:
    promtool = program("promtool", "prometheus")
    broken = tmp_path / "broken.yml"
    broken.write_text(RULES.read_text().replace("> 900", "> > 900", 1))
    done = subprocess.run([promtool, "check", "rules", str(broken)], capture_output=True)
    assert done.returncode != 0


def rule_expressions() -> list[str]:
    text = RULES.read_text()
    # every `expr:` of the file, folded (`>-`) or on one line; the YAML is ours and regular
    exprs = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        key, _, value = line.strip().partition(":")
        if key != "expr":
            continue
        value = value.strip()
        if value in (">-", ">", "|"):
            indent = len(line) - len(line.lstrip())
            body = []
            for follow in lines[i + 1 :]:
                if follow.strip() and len(follow) - len(follow.lstrip()) <= indent:
                    break
                body.append(follow.strip())
            value = " ".join(body)
        exprs.append(value)
    return exprs


def dashboard_expressions() -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "definition") and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(DASHBOARD.read_text()))
    return found


def test_the_dashboard_and_rules_have_queries() -> None:
    # the extraction below must see them, or the next test checks nothing
    assert len(rule_expressions()) >= 6
    assert len(dashboard_expressions()) >= 15
    for expr in rule_expressions() + dashboard_expressions():
        assert _METRIC.search(expr) or expr.startswith("up{"), expr


def test_every_metric_the_dashboard_and_rules_read_is_exported(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    sim, url = chtsim
    with running_bridge(
        tmp_path, cht_url=url.replace("http://", "http://admin:pass@"), start_workers=True
    ) as bridge:
        good = bridge.http.post(
            bridge.inbound_path("africastalking"),
            data={"from": "+254712345678", "to": "12345", "text": "hello", "id": "at-1"},
        )
        assert good.status_code == 200, good.text
        refused = bridge.http.post(
            "/carriers/africastalking/not-the-token/inbound",
            data={"from": "+254712345678", "text": "hello", "id": "at-2"},
        )
        assert refused.status_code == 401
        assert WEBHOOK_TOKENS["africastalking"] not in refused.text
        wait_for(lambda: bool(sim.records()), "the SMS reached CHT")
        text = bridge.http.get("/metrics").text
    exported = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    wanted: dict[str, list[str]] = {}
    for expr in rule_expressions() + dashboard_expressions():
        for name in _METRIC.findall(expr):
            wanted.setdefault(name, []).append(expr)
    missing = sorted(set(wanted) - exported)
    assert not missing, f"read by deploy/ but not exported: {missing}"
