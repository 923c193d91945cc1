"""``synthora ui`` in a real browser: Debian's headless Chromium, driven by Playwright.

Chromium is installed with apt-get when it is missing and this user may install it (CI runs as
root); these tests skip, saying why, only when it cannot be installed. They run on SQLite, the
embedded default (test_ui.py serves the same pages from PostgreSQL). Every wait is on a condition
the page shows (Playwright's ``expect``), never a sleep.

``SYNTHORA_UPDATE_SCREENSHOT=1`` also writes the run page's screenshot to ``docs/run-page.png``,
the picture the README shows.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from playwright.sync_api import Browser, Page, expect, sync_playwright

import synthora.telemetry
from support import AGENT
from synthora import Node, NodeType, scope, system, user
from synthora.events import Usage
from synthora.models import BaseModelBackend, ModelDelta, ModelReply, ModelRequest
from synthora.testing.browser import CHROMIUM, LAUNCH_ARGS, chromium_missing
from synthora.testing.server import Behaviour

SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "run-page.png"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    reason = chromium_missing()
    if reason is not None:
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, viewer: str) -> Iterator[Page]:
    """A fresh tab, closed before the viewer stops. The test fails if the page logs an error
    (a script's, or a CSP violation) or opens a dialog (a script that came with model output)."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    opened = context.new_page()
    troubles: list[str] = []
    opened.on("console", lambda m: troubles.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda error: troubles.append(str(error)))
    opened.on("dialog", lambda dialog: troubles.append(f"dialog: {dialog.message}"))
    yield opened
    context.close()
    assert troubles == []


@pytest.fixture
def log_url(tmp_path: Path) -> str:
    """The embedded default: a SQLite file."""
    return f"sqlite:///{tmp_path / 'events.db'}"


class StallingBackend(BaseModelBackend):
    """Streams its words a few milliseconds apart, but waits `stall_s` before word `stall_at`:
    the stall the token timeline has to find."""

    provider = "test"
    operation = "chat"

    def __init__(self, words: list[str], stall_at: int, stall_s: float, **options: Any) -> None:
        super().__init__(**options)
        self.words, self.stall_at, self.stall_s = words, stall_at, stall_s

    def _generate(self, request: ModelRequest) -> ModelReply:
        raise NotImplementedError("this backend only streams")

    def _stream(self, request: ModelRequest) -> Iterator[ModelDelta]:
        for index, word in enumerate(self.words):
            time.sleep(self.stall_s if index == self.stall_at else 0.02)
            yield ModelDelta(text=word)
        usage = Usage(input_tokens=31, output_tokens=len(self.words))
        yield ModelDelta(finish_reason="stop", usage=usage)


PLAN = (
    "Morning: the Louvre, before the crowds. Lunch at a bistro in the Marais. "
    "Afternoon: walk the Seine to Notre-Dame, then up to Montmartre for the sunset."
)


def test_runs_list_filters_and_links_to_each_run(page, make_backend, log, viewer):
    """The runs page lists each run with its status; 'errors only' narrows it; a row's link
    opens the run."""
    backend = make_backend(behaviour=Behaviour(tokens=("fine",)))
    backend.run("first")
    make_backend(behaviour=Behaviour(status=429, error_message="slow down"))
    with pytest.raises(openai.RateLimitError):
        backend.run("second")
    failed, fine = log.runs()
    page.goto(viewer)
    rows = page.locator("#runs tr[data-run]")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("RateLimitError")
    expect(rows.nth(1)).to_contain_text("stop")
    page.get_by_label("errors only").check()
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(page).to_have_url(re.compile(r"errors=1"))
    rows.nth(0).get_by_role("link").click()
    expect(page).to_have_url(f"{viewer}/runs/{failed.run_id}")
    expect(page.locator("h1")).to_contain_text("error")
    assert fine.status == "ok"


def test_streamed_run_shows_transcript_and_token_timeline(page, log, viewer):
    """A streamed run's page has the messages, the output, the usage, the trace link, and the
    token timeline: time to first token, tokens per second, the longest gap marked where it was."""
    words = [word + " " for word in PLAN.split()]
    stall_at = 9
    backend = StallingBackend(
        words, stall_at, 0.4, model_type="planner-1", source=AGENT, name="ChatBackend"
    )
    backend.set_stream(True)
    provider = TracerProvider(shutdown_on_exit=False)
    synthora.telemetry.instrument(provider)
    try:
        messages = [system("You plan trips."), user("Plan a day in Paris.")]
        output = "".join(chunk.delta for chunk in backend.run(messages, temperature=0.7))
    finally:
        synthora.telemetry.uninstrument()
        provider.shutdown()
    (run,) = log.runs()
    page.goto(f"{viewer}/runs/{run.run_id}")
    expect(page.locator(".conversation")).to_contain_text("Plan a day in Paris.")
    expect(page.locator("#output .text")).to_have_text(output)
    expect(page.locator("#usage")).to_contain_text(f"31 in, {len(words)} out")
    expect(page.locator("#token-count")).to_have_text(str(len(words)))
    expect(page.locator("#first-token")).to_have_text(re.compile(r"\d+(\.\d+)? ms"))
    expect(page.locator("#tokens-per-s")).to_have_text(re.compile(r"\d+\.\d"))
    longest = page.locator("#longest-gap")
    expect(longest).to_have_text(re.compile(r"4\d\d ms"))
    expect(page.locator(".stats")).to_contain_text(f"before token {stall_at + 1}")
    expect(page.locator("#stream .stall")).to_have_text(words[stall_at])
    expect(page.locator("svg.chart rect.gap")).to_be_visible()
    expect(page.locator("#jaeger")).to_have_attribute("href", re.compile(run.trace_id + "$"))
    assert len(run.trace_id) == 32
    picture = screenshot_path(log)
    page.screenshot(path=str(picture), full_page=True)
    assert picture.read_bytes().startswith(b"\x89PNG")


def screenshot_path(log: Any) -> Path:
    """Where the run page's picture goes: the README's when asked, else beside the test's log."""
    if os.environ.get("SYNTHORA_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        return SCREENSHOT
    return Path(log.url.removeprefix("sqlite:///")).with_name("run-page.png")


def test_failed_run_shows_error_status_and_partial_output(page, make_backend, log, viewer):
    """A stream that failed half-way shows the error's type, code and message, the output it
    had given, and where on the timeline it broke; a refused request shows its HTTP status."""
    behaviour = Behaviour(
        n_tokens=6, error_after=3, error_message="model overloaded", error_code=503
    )
    backend = make_backend(behaviour=behaviour, stream=True)
    with pytest.raises(openai.APIError, match="model overloaded"):
        for _ in backend.run("go"):
            pass
    make_backend(behaviour=Behaviour(status=429, error_message="slow down"))
    with pytest.raises(openai.RateLimitError):
        backend.run("again")
    refused, broken = log.runs()
    page.goto(f"{viewer}/runs/{broken.run_id}")
    error = page.locator("#error")
    expect(error).to_contain_text("APIError")
    expect(error).to_contain_text("code 503")
    expect(error).to_contain_text("during the stream")
    expect(error.locator(".error-message")).to_have_text("model overloaded")
    expect(page.get_by_role("heading", name="Partial output")).to_be_visible()
    expect(page.locator("#output .text")).to_have_text(" w0 w1 w2")
    expect(page.locator(".stats .broke")).to_be_visible()
    expect(page.locator("svg.chart line.broke")).to_be_attached()
    page.goto(f"{viewer}/runs/{refused.run_id}")
    expect(page.locator("#error .http-status")).to_have_text("HTTP 429")
    expect(page.locator("#error .error-type")).to_have_text("RateLimitError")


def test_scope_shows_its_runs_as_a_tree_with_timings(page, make_backend, log, viewer):
    """An agent's page lays its runs out as a tree on one time axis; each step links to its
    page, which leads back to the agent."""
    backend = make_backend(behaviour=Behaviour(tokens=("ok",)))
    planner = Node(name="planner", type=NodeType.AGENT)
    with scope(planner) as agent:
        backend.run("plan")
        with scope(Node(name="get_weather", type=NodeType.TOOL)):
            pass
        backend.run("sum up")
    page.goto(f"{viewer}/runs/{agent.run_id}")
    steps = page.locator("#steps tr")
    expect(steps).to_have_count(4)
    expect(steps.nth(0)).to_contain_text("invoke_agent planner")
    expect(steps.nth(2)).to_contain_text("execute_tool get_weather")
    assert steps.nth(2).locator(".indent").count() == 1
    expect(steps.locator("svg.bar rect")).to_have_count(4)
    expect(steps.nth(1)).to_contain_text(re.compile(r"\d+(\.\d+)? ms"))
    steps.nth(2).get_by_role("link").click()
    expect(page.locator("h1")).to_contain_text("execute_tool get_weather")
    page.locator(".crumbs").get_by_role("link", name="invoke_agent planner").click()
    expect(page).to_have_url(f"{viewer}/runs/{agent.run_id}")


def test_new_runs_appear_live_without_a_reload(page, make_backend, log, viewer):
    """With the runs page open, a run that starts and ends shows up at the top by itself."""
    backend = make_backend(behaviour=Behaviour(tokens=("x",)))
    backend.run("before")
    page.goto(viewer)
    expect(page.locator("#runs tr[data-run]")).to_have_count(1)
    expect(page.locator("#live")).to_have_class(re.compile("connected"))
    page.evaluate("window.sameDocument = true")
    backend.run("while watching")
    (run,) = log.runs(limit=1)
    row = page.locator(f'#runs tr[data-run="{run.run_id}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("ok")
    expect(page.locator("#runs tr[data-run]").first).to_have_attribute("data-run", run.run_id)
    assert page.evaluate("window.sameDocument") is True


def test_model_output_that_looks_like_html_is_shown_as_text(page, make_backend, log, viewer):
    """Messages and output are untrusted: markup in them is shown, never run or rendered."""
    attack = ('<img src=x onerror="alert(1)">', "<script>alert(2)</script>")
    backend = make_backend(behaviour=Behaviour(tokens=attack), stream=True)
    question = "<b>bold?</b><iframe src=javascript:alert(3)>"
    "".join(chunk.delta for chunk in backend.run(question))
    (run,) = log.runs()
    page.goto(f"{viewer}/runs/{run.run_id}")
    expect(page.locator("#output .text")).to_have_text("".join(attack))
    expect(page.locator(".conversation .role-user .text")).to_have_text(question)
    assert page.locator("main img, main script, main iframe, main b").count() == 0


def test_copy_buttons_copy_the_commands(page, make_backend, log, viewer):
    """Each command's button puts the command line on the clipboard."""
    make_backend(behaviour=Behaviour(tokens=("x",))).run("copy me")
    (run,) = log.runs()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=viewer)
    page.goto(f"{viewer}/runs/{run.run_id}")
    button = page.locator("button.copy").first
    button.click()
    expect(button).to_have_text("copied")
    assert page.evaluate("navigator.clipboard.readText()") == f"synthora show {run.run_id}"


def test_a_long_stream_page_is_usable(page, make_backend, log, viewer):
    """A 2,000-token run's page loads with every token on its timeline."""
    backend = make_backend(behaviour=Behaviour(n_tokens=2000), stream=True)
    "".join(chunk.delta for chunk in backend.run("a long one"))
    (run,) = log.runs()
    page.goto(f"{viewer}/runs/{run.run_id}")
    expect(page.locator("#token-count")).to_have_text("2000")
    expect(page.locator("#stream span[title]")).to_have_count(2000)
    points = page.locator("svg.chart polyline").get_attribute("points") or ""
    assert points.count(",") == 2 * 2000 + 2  # a step a token, and the start and the end
