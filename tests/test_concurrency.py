"""Many runs at once on one backend: each run's events stay contiguous and its own."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict

from synthora.events import EndEvent, Event, StartEvent, TokenEvent
from synthora.testing.server import Behaviour


def assert_runs_intact(events: list[Event], prompts: set[str]) -> None:
    by_run: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_run[event.run_id].append(event)
    assert len(by_run) == len(prompts)
    answered = set()
    for run_events in by_run.values():
        assert [e.seq for e in run_events] == list(range(len(run_events)))
        start, end = run_events[0], run_events[-1]
        assert isinstance(start, StartEvent)
        assert isinstance(end, EndEvent)
        assert start.messages is not None
        prompt = start.messages[0].text
        text = "".join(e.text for e in run_events if isinstance(e, TokenEvent))
        assert end.output is not None
        assert text == end.output.text
        assert text.endswith(prompt)
        answered.add(prompt)
    assert answered == prompts


async def test_200_concurrent_async_runs(make_backend, events):
    """200 concurrent streamed async runs keep their events apart and in order."""
    backend = make_backend(behaviour=Behaviour(delay_s=0.002), stream=True)
    prompts = {f"task {i}" for i in range(200)}

    async def one(prompt: str) -> str:
        return "".join([chunk.delta async for chunk in await backend.async_run(prompt)])

    texts = await asyncio.gather(*(one(p) for p in prompts))
    assert all(t.endswith(p) for t, p in zip(texts, prompts, strict=True))
    assert_runs_intact(events, prompts)
    await backend.async_client.close()


def test_8_threads_of_runs(make_backend, events):
    """8 threads running streamed and plain runs on one backend keep their events apart."""
    backend = make_backend()
    prompts = {f"thread {t} run {r}" for t in range(8) for r in range(10)}
    barrier = threading.Barrier(8)
    failures: list[BaseException] = []

    def worker(t: int) -> None:
        barrier.wait()
        try:
            for r in range(10):
                backend.run(f"thread {t} run {r}")
        except BaseException as exc:  # surfaced below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert_runs_intact(events, prompts)
