"""Embeddings (`POST /v1/embeddings`) on the run lifecycle: a run with a start and an end, the
vectors stored compactly, served again offline, dropped with the content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthora.errors import InvalidRequestError
from synthora.events import EndEvent, StartEvent
from synthora.models import OpenAIEmbeddingBackend
from synthora.storage import EventLog, ReplayBackend
from synthora.testing.server import Behaviour, embedding_of

SAMPLES = Path(__file__).with_name("wire_samples")


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_texts_in_vectors_out(make_backend, events, use_async):
    """One vector per text, in order; the run is start then end, with no tokens."""
    backend = make_backend(OpenAIEmbeddingBackend)
    texts = ["the first text", "a second one"]
    vectors = await backend.async_run(texts) if use_async else backend.run(texts)
    assert vectors == [embedding_of(text) for text in texts]
    start, end = events
    assert isinstance(start, StartEvent)
    assert (start.operation, start.provider, start.prompt) == ("embeddings", "openai", texts)
    assert isinstance(end, EndEvent)
    assert end.usage is not None
    assert end.usage.input_tokens == 6  # words, as the test server counts tokens
    assert end.vectors is not None
    assert len(end.vectors) == 2
    if use_async:
        await backend.async_client.close()


def test_one_text(make_backend):
    assert make_backend(OpenAIEmbeddingBackend).run("alone") == [embedding_of("alone")]


@pytest.mark.parametrize("bad", [[], [1, 2], 42], ids=["empty", "not-strings", "a-number"])
def test_bad_input_is_refused_before_anything_is_sent(make_backend, events, bad):
    with pytest.raises(InvalidRequestError, match="embed"):
        make_backend(OpenAIEmbeddingBackend).run(bad)
    assert events == []


def test_a_server_error_is_one_error_event(make_backend, events):
    import openai  # noqa: PLC0415 - only this test needs the SDK's error classes

    backend = make_backend(
        OpenAIEmbeddingBackend,
        behaviour=Behaviour(status=501, error_message="This server does not support embeddings"),
    )
    with pytest.raises(openai.APIStatusError, match="does not support embeddings"):
        backend.run("x")
    assert [e.kind for e in events] == ["start", "error"]


def test_stored_compactly_and_replayed(tmp_path, make_backend):
    """The log keeps the vectors (float32, 4 bytes a dimension) and ReplayBackend serves the
    same vectors offline; with store_content=False neither texts nor vectors are kept."""
    backend = make_backend(OpenAIEmbeddingBackend)
    texts = ["remember", "these"]
    with EventLog(f"sqlite:///{tmp_path / 'vectors.db'}") as log:
        log.attach()
        live = backend.run(texts)
        (summary,) = log.runs()
        stored = list(log.events(summary.run_id))[-1]
        again = ReplayBackend(log, operation="embeddings").run(texts)
    assert summary.operation == "embeddings"
    assert stored.vectors is not None
    assert [len(v) for v in stored.vectors] == [4 * len(live[0])] * 2
    assert again == live
    with EventLog(f"sqlite:///{tmp_path / 'private.db'}", store_content=False) as log:
        log.attach()
        backend.run(texts)
        (summary,) = log.runs()
        start, end = log.events(summary.run_id)
    assert (start.prompt, end.vectors) == (None, None)


def test_llama_cpp_embeddings(make_backend):
    """What llama.cpp's server sends (float lists, usage without completion tokens)."""
    body = (SAMPLES / "embeddings-json.txt").read_bytes().split(b"\n\n", 1)[1]
    backend = make_backend(OpenAIEmbeddingBackend, behaviour=Behaviour(raw=(body,)))
    vectors = backend.run(["hello", "world"])
    expected = json.loads(body)["data"]
    assert len(vectors) == len(expected) == 2
    assert vectors[0][:3] == pytest.approx(expected[0]["embedding"][:3], rel=1e-6)
