"""Fixtures shared by the suite: one real OpenAI-wire server, and backends pointed at it.

Each test gets its own model name, so the behaviour it scripts on the shared server (errors,
slow or broken streams) never leaks into another test.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from synthora import Node, NodeType, OpenAIChatBackend
from synthora.models.base import BaseModelBackend
from synthora.testing import capture_events
from synthora.testing.server import Behaviour, OpenAICompatibleServer

API_KEY = "test-key-synthora-do-not-log-4f1c9e"
AGENT = Node(name="assistant", type=NodeType.AGENT)


@pytest.fixture(scope="session")
def server() -> Iterator[OpenAICompatibleServer]:
    with OpenAICompatibleServer() as srv:
        yield srv


@pytest.fixture
def model(request: pytest.FixtureRequest) -> str:
    """A model name unique to this test, so its scripted behaviour is its own."""
    return "model-" + re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")


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
