"""Helpers shared by test modules (conftest.py holds the fixtures)."""

from __future__ import annotations

import functools
import io
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, make_url, text

from synthora import BaseCallBackHandler, Node, NodeType
from synthora.cli import main
from synthora.events import EndEvent, ErrorEvent, StartEvent, TokenEvent
from synthora.storage.engines import safe_url
from synthora.storage.errors import error_line

API_KEY = "test-key-synthora-do-not-log-4f1c9e"
AGENT = Node(name="assistant", type=NodeType.AGENT)


def cli(*argv: str) -> tuple[int, str]:
    """Run the command line in this process: its exit status and what it wrote to stdout."""
    out = io.StringIO()
    status = main(list(argv), out=out)
    return status, out.getvalue()


class Recorder(BaseCallBackHandler):
    """A handler that records the kinds of event it hears, in order."""

    def __init__(self) -> None:
        self.kinds: list[str] = []

    def on_llm_start(self, event: StartEvent) -> None:
        self.kinds.append(event.kind)

    def on_llm_chunk(self, event: TokenEvent) -> None:
        self.kinds.append(event.kind)

    def on_llm_end(self, event: EndEvent) -> None:
        self.kinds.append(event.kind)

    def on_llm_error(self, event: ErrorEvent) -> None:
        self.kinds.append(event.kind)


# -- the test PostgreSQL ----------------------------------------------------------------------

POSTGRES_URL = os.environ.get(
    "SYNTHORA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@functools.cache
def postgres_unavailable() -> str | None:
    """Why the test PostgreSQL cannot be used, or None when it answers."""
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any reason at all means: skip, saying why
        return error_line(exc)
    return None


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL to a fresh, private schema of the test PostgreSQL, dropped afterwards."""
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(
            f"PostgreSQL at {safe_url(POSTGRES_URL)} is not reachable ({reason}); set "
            "SYNTHORA_TEST_POSTGRES_URL to a PostgreSQL database to run these tests"
        )
    schema = f"synthora_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
