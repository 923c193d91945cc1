"""Programs that end their event loops with streams still open, or run several loops on one
backend: each run is closed and stored, and nothing stray is printed. Each program runs in a
process of its own, as a user's script does, so what it prints at loop end and at exit is seen."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support import API_KEY
from synthora.storage import EventLog
from synthora.testing.server import Behaviour, OpenAICompatibleServer

PROGRAM = """\
import asyncio, sys
from synthora import Node, NodeType, OpenAIChatBackend
from synthora.models import AnthropicBackend
from synthora.storage import EventLog

kind, base_url, db, model, api_key = sys.argv[1:]
log = EventLog(db)
log.attach()
source = Node(name="app", type=NodeType.AGENT)
if kind == "anthropic":
    backend = AnthropicBackend.default(
        model, source, api_key=api_key, base_url=base_url.removesuffix("/v1"), max_retries=0
    )
else:
    backend = OpenAIChatBackend.default(
        model, source, api_key=api_key, base_url=base_url, max_retries=0
    )
"""

LEFT_OPEN = {
    "held": """
        kept = []

        async def main():
            stream = await backend.async_run("go")
            await anext(stream)
            kept.append(stream)  # held, never closed

        backend.set_stream(True)
        asyncio.run(main())
        """,
    "dropped": """
        async def main():
            stream = await backend.async_run("go")
            await anext(stream)  # then dropped, never closed

        backend.set_stream(True)
        asyncio.run(main())
        """,
    "task-reading": """
        readers = []

        async def read(first):
            async for _ in await backend.async_run("go"):
                first.set()

        async def main():
            first = asyncio.Event()
            readers.append(asyncio.create_task(read(first)))
            await first.wait()  # returns while the task still reads

        backend.set_stream(True)
        asyncio.run(main())
        """,
}


def run_program(
    body: str, kind: str, server: OpenAICompatibleServer, db: str, model: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    program = tmp_path / "program.py"
    program.write_text(PROGRAM + textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, str(program), kind, server.base_url, db, model, API_KEY],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("how", list(LEFT_OPEN))
def test_a_stream_left_open_when_asyncio_run_ends(server, model, tmp_path, how):
    """A stream still open as ``asyncio.run()`` returns (held, dropped, or being read by a task
    the loop cancels) is closed with its loop: stored as interrupted, and nothing printed."""
    server.behave(model, Behaviour(delay_s=0.05, n_tokens=400))
    db = f"sqlite:///{tmp_path / 'events.db'}"
    done = run_program(LEFT_OPEN[how], "openai", server, db, model, tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    with EventLog(db) as log:
        (summary,) = log.runs()
        *_, end = log.events(summary.run_id)
    assert summary.status == "interrupted"
    assert end.output is not None
    assert end.output.text.startswith(" w0")


@pytest.mark.parametrize("stream", [False, True], ids=["no-stream", "stream"])
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_one_backend_in_two_asyncio_runs(server, model, tmp_path, kind, stream):
    """A backend used under one ``asyncio.run()`` and then under another answers both times,
    and nothing is printed but the replies."""
    db = f"sqlite:///{tmp_path / 'events.db'}"
    body = f"""
        backend.set_stream({stream})

        async def ask(text):
            reply = await backend.async_run(text)
            if backend.stream:
                return "".join([chunk.delta async for chunk in reply])
            return reply.text

        print(asyncio.run(ask("one")))
        print(asyncio.run(ask("two")))
        """
    done = run_program(body, kind, server, db, model, tmp_path)
    assert (done.stdout, done.stderr, done.returncode) == ("You said: one\nYou said: two\n", "", 0)
    with EventLog(db) as log:
        assert [summary.status for summary in log.runs()] == ["ok", "ok"]
