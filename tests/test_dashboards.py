"""The Grafana dashboards: a well-formed model, and SQL that gives the right numbers for real
runs in the real PostgreSQL schema (Grafana's macros expanded here, as Grafana would)."""

from __future__ import annotations

import datetime
import json
import re
import sys
from pathlib import Path

import openai
import pytest
import yaml
from sqlalchemy import create_engine, text

from synthora import Node, NodeType, scope
from synthora.storage import EventLog
from synthora.testing.server import Behaviour

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from grafana_macros import grafana_sql  # noqa: E402 - the bench folder is not a package

DASHBOARDS = sorted((ROOT / "dashboards" / "json").glob("*.json"))
PROVISIONING = ROOT / "dashboards" / "provisioning"


def datasources() -> dict[str, dict]:
    found = {}
    for path in (PROVISIONING / "datasources").glob("*.yml"):
        for source in yaml.safe_load(path.read_text())["datasources"]:
            found[source["uid"]] = source
    return found


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_model(path):
    """schemaVersion, and panels with id, type, gridPos, an existing datasource and targets."""
    dashboard = json.loads(path.read_text())
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"]
    known = datasources()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"id", "type", "title", "gridPos", "datasource", "targets"} <= set(panel)
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["datasource"]["uid"] in known
        assert known[panel["datasource"]["uid"]]["type"] == panel["datasource"]["type"]
        for target in panel["targets"]:
            assert target["rawSql"].strip()
            assert target["datasource"]["uid"] in known
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    used = {
        m
        for p in dashboard["panels"]
        for t in p["targets"]
        for m in re.findall(r"\$(\w+)", t["rawSql"])
    }
    assert {name for name in used if not name.startswith("__")} <= variables


def test_trace_links_go_to_jaeger():
    """Every data link is well-formed and trace links open `${jaeger_url}/trace/<id>`."""
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        links = [
            link
            for panel in dashboard["panels"]
            for override in panel["fieldConfig"]["overrides"]
            for prop in override["properties"]
            if prop["id"] == "links"
            for link in prop["value"]
        ]
        assert links, "a dashboard without links to Jaeger"
        for link in links:
            assert link["title"]
            assert link["url"] == "${jaeger_url}/trace/${__value.raw}"


def test_provisioned_datasources():
    """PostgreSQL with the database under jsonData, and Jaeger, each with a fixed uid."""
    known = datasources()
    postgres = known["synthora-events"]
    assert postgres["type"] == "grafana-postgresql-datasource"
    assert postgres["jsonData"]["database"] == "${POSTGRES_DB}"
    assert "password" in postgres["secureJsonData"]
    assert known["synthora-jaeger"]["type"] == "jaeger"
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "synthora.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


# -- the SQL, for real ------------------------------------------------------------------------


@pytest.fixture
def recorded_runs(postgres_url, make_backend):
    """Real runs in PostgreSQL: 3 ok (one streamed), 2 failed, 1 interrupted, 1 truncated,
    one agent scope."""
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    with EventLog(postgres_url) as log:
        log.attach()
        backend = make_backend()
        with scope(Node(name="planner", type=NodeType.AGENT)):
            backend.run("one")
            backend.run("two")
        list(make_backend(stream=True).run("three streamed"))
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                make_backend(behaviour=Behaviour(status=500, error_message="boom")).run("x")
        slow = make_backend(behaviour=Behaviour(n_tokens=50, delay_s=0.005), stream=True)
        stream = slow.run("leave early")
        next(stream)
        stream.close()
        list(make_backend(behaviour=Behaviour(n_tokens=6, end_after=3), stream=True).run("cut"))
    end = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1)
    return postgres_url, start, end


def test_every_panel_query_runs_and_counts_right(recorded_runs):
    """Each panel's SQL runs on the real schema; the counts match the runs that were made."""
    url, start, end = recorded_runs
    (dashboard,) = (json.loads(p.read_text()) for p in DASHBOARDS)
    engine = create_engine(url)
    results = {}
    with engine.connect() as connection:
        variables = {}
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                rows = connection.execute(text(variable["query"])).scalars().all()
                variables[variable["name"]] = [str(r) for r in rows] or [""]
        for panel in dashboard["panels"]:
            (target,) = panel["targets"]
            sql = grafana_sql(target["rawSql"], start, end, variables)
            results[panel["title"]] = connection.execute(text(sql)).mappings().all()
    engine.dispose()
    assert len(results) == len(dashboard["panels"])
    assert results["Failed runs"][0]["failed"] == 2
    assert results["Interrupted streams"][0]["interrupted"] == 1
    assert results["Truncated streams"][0]["truncated"] == 1
    assert results["Error rate"][0]["error_rate"] == pytest.approx(2 / 7)
    (top,) = results["Top error types"]
    assert (top["error_type"], top["errors"], top["http_status"]) == ("InternalServerError", 2, 500)
    assert sum(r["runs"] for r in results["Model runs per minute, by model"]) == 7
    assert sum(r["runs"] for r in results["Model runs per minute, by node"]) == 7
    assert sum(r["steps"] for r in results["Agent and tool steps per minute"]) == 1
    assert len(results["Recent runs"]) == 8
    assert all(r["show_command"].startswith("synthora show ") for r in results["Recent runs"])
    latency = results["Latency p50 / p95 / p99"]
    assert latency
    assert all(0 < r["p50"] <= r["p95"] <= r["p99"] for r in latency)
    assert results["Time to first token p50 / p95"]
    outputs = {r["metric"]: r["tokens"] for r in results["Tokens per 5 minutes, by model"]}
    assert any(name.endswith(" output") and tokens for name, tokens in outputs.items())
    stored = sum(r["events"] for r in results["Stored events per minute, by kind"])
    with EventLog(url) as log:
        assert stored == sum(len(list(log.events(s.run_id))) for s in log.runs())
