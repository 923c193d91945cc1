"""docker-compose.yml is valid Compose and wires what the README says (no Docker engine here)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT.parent / "shared" / "schemas" / "compose-spec.json"
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def interpolated(text: str, environment: dict[str, str]) -> str:
    """Compose's ${VAR:-default} expansion."""
    return _VARIABLE.sub(lambda m: environment.get(m.group(1)) or m.group(2) or "", text)


@pytest.fixture(scope="module")
def compose() -> dict:
    text = (ROOT / "docker-compose.yml").read_text()
    return yaml.safe_load(interpolated(text, {}))


def test_valid_against_the_compose_specification(compose):
    """The file, after interpolation, validates against the official Compose JSON schema."""
    if not SCHEMA.exists():
        pytest.skip(f"the Compose schema is not at {SCHEMA}")
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(compose)


def test_jaeger_service(compose):
    """Jaeger v2, pinned, with OTLP and the UI on localhost, and a health check on 13133."""
    jaeger = compose["services"]["jaeger"]
    assert jaeger["image"] == "jaegertracing/jaeger:2.20.0"
    assert set(jaeger["ports"]) == {
        "127.0.0.1:16686:16686",
        "127.0.0.1:4317:4317",
        "127.0.0.1:4318:4318",
    }
    assert "13133/status" in " ".join(jaeger["healthcheck"]["test"])


def test_postgres_service(compose):
    """PostgreSQL pinned, on localhost, its data in a named volume at the path its version uses."""
    postgres = compose["services"]["postgres"]
    major = int(postgres["image"].split(":")[1].split(".")[0])
    data = "/var/lib/postgresql" if major >= 18 else "/var/lib/postgresql/data"
    assert postgres["volumes"] == [f"synthora-events:{data}"]
    assert "synthora-events" in compose["volumes"]
    assert postgres["ports"] == ["127.0.0.1:5432:5432"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_env_example_names_every_variable():
    """Every ${VAR} the compose file reads is documented in .env.example."""
    used = set(_VARIABLE.findall((ROOT / "docker-compose.yml").read_text()))
    documented = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert {name for name, _ in used} <= documented


def test_environment_overrides_ports():
    """A port from the environment replaces the default."""
    text = (ROOT / "docker-compose.yml").read_text()
    compose = yaml.safe_load(interpolated(text, {"JAEGER_UI_PORT": "26686", **os.environ}))
    assert "127.0.0.1:26686:16686" in compose["services"]["jaeger"]["ports"]


def test_grafana_service(compose):
    """Grafana pinned, on localhost, provisioned from dashboards/, after the schema exists."""
    grafana = compose["services"]["grafana"]
    assert grafana["image"] == "grafana/grafana:13.2.0"
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]
    mounts = set(grafana["volumes"])
    assert "./dashboards/provisioning:/etc/grafana/provisioning:ro" in mounts
    assert "./dashboards/json:/var/lib/grafana/dashboards:ro" in mounts
    assert grafana["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert (ROOT / "dashboards" / "provisioning" / "datasources").is_dir()
    migrate = compose["services"]["migrate"]
    assert "synthora" in " ".join(migrate["command"])
    assert migrate["command"][-1].rstrip().endswith("migrate")
