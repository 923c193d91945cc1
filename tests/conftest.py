"""Fixtures shared by the suite: one real OpenAI-wire server, and backends pointed at it.

Each test gets its own model name, so the behaviour it scripts on the shared server (errors,
slow or broken streams) never leaks into another test.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support import AGENT, API_KEY, postgres_schema
from synthora import OpenAIChatBackend
from synthora.models.base import BaseModelBackend
from synthora.storage import EventLog
from synthora.testing import capture_events
from synthora.testing.server import Behaviour, OpenAICompatibleServer


@pytest.fixture(scope="session", autouse=True)
def spool_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Spools go to a folder of the test session's, not the user's cache (workers inherit it)."""
    folder = tmp_path_factory.mktemp("spool")
    os.environ["SYNTHORA_SPOOL_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def server() -> Iterator[OpenAICompatibleServer]:
    with OpenAICompatibleServer() as srv:
        yield srv


@pytest.fixture
def model(request: pytest.FixtureRequest) -> str:
    """A model name unique to this test, so its scripted behaviour is its own."""
    name = f"{request.node.module.__name__}-{request.node.name}"
    return "model-" + re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


MakeBackend = Callable[..., Any]


@pytest.fixture
def make_backend(server: OpenAICompatibleServer, model: str) -> Iterator[MakeBackend]:
    """Build a backend for this test's model; `behaviour` scripts how the server answers it."""
    built: list[BaseModelBackend] = []

    def make(
        cls: type[OpenAIChatBackend] = OpenAIChatBackend,
        behaviour: Behaviour | None = None,
        **options: Any,
    ) -> Any:
        if behaviour is not None:
            server.behave(model, behaviour)
        options.setdefault("max_retries", 0)
        backend = cls.default(model, AGENT, api_key=API_KEY, base_url=server.base_url, **options)
        built.append(backend)
        return backend

    yield make
    for backend in built:
        assert isinstance(backend, OpenAIChatBackend)
        backend.client.close()


@pytest.fixture
def events() -> Iterator[list[Any]]:
    """Every event emitted during the test."""
    with capture_events() as captured:
        yield captured


# -- the event log, on SQLite and on a real PostgreSQL ---------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty event-log database: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema of the test PostgreSQL (skipped, saying how to enable it, if none)."""
    with postgres_schema() as url:
        yield url


@pytest.fixture
def log(log_url: str) -> Iterator[EventLog]:
    """An event log attached to the bus for the test."""
    with EventLog(log_url) as event_log:
        event_log.attach()
        yield event_log


@pytest.fixture
def viewer(log: EventLog) -> Iterator[str]:
    """``synthora ui`` over the test's log, on a free loopback port; yields its base URL."""
    from synthora.ui import create_app, serving  # noqa: PLC0415 - only these tests need it

    with serving(create_app(log, page_size=3)) as url:
        yield url
