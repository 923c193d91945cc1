"""How fast ``synthora ui`` answers on a large event log, on SQLite and on PostgreSQL.

usage: python bench/ui_pages.py [--runs 20000] [--tokens 48] [--long-tokens 2000]
       [--rounds 5] [--postgres URL] [--json FILE]

Fills a log with `--runs` synthetic streamed runs of `--tokens` tokens each (20,000 x 50 events:
1,000,000 events) plus one run of `--long-tokens` tokens, serves the viewer over it, and times
each page as the server reports it (``Server-Timing``, what the app spent) and as a client waits
for it: the runs page newest first, filtered (model, status, errors only, node), a deep page
reached by its cursor, and the long run's page. Then, where Chromium is installed, the long run's
page in a headless browser: from navigation to the timeline on screen, and to the load event.
Medians of `--rounds`.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from event_log import POSTGRES_URL, postgres_schema_url

from dashboards import synthetic_run
from synthora.events import Event
from synthora.storage import EventLog
from synthora.testing.browser import CHROMIUM, LAUNCH_ARGS, chromium_missing
from synthora.ui import create_app, serving

SERVER_TIMING = re.compile(r"app;dur=([\d.]+)")


def fill(log: EventLog, runs: int, tokens: int, long_tokens: int) -> tuple[str, str]:
    """Write the synthetic runs, spread over the last six hours; returns the long run's id,
    and the id of a run 95% of the way down the listing (the cursor of a deep page)."""
    rng = random.Random(7)
    now = time.time_ns()
    start = now - 6 * 3600 * 10**9
    step = (now - start) // max(1, runs)
    deep: list[str] = []

    def everything() -> Iterator[Event]:
        for number in range(runs):
            events = synthetic_run(start + number * step, tokens, rng)
            if number == runs // 20:
                deep.append(events[0].run_id)
            yield from events

    log.write(everything())
    long_run = synthetic_run(now, long_tokens, random.Random(1))
    log.write(long_run)
    return long_run[0].run_id, deep[0]


def timed_get(url: str) -> tuple[float, float]:
    """(server ms, client ms) of one GET."""
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:
        response.read()
        server = SERVER_TIMING.search(response.headers["Server-Timing"] or "")
    client = (time.perf_counter() - began) * 1000
    return (float(server.group(1)) if server else float("nan")), client


def pages(long_run: str, deep_run: str) -> dict[str, str]:
    """The pages to time, as paths."""
    return {
        "runs newest": "/",
        "runs model=gpt-4o": "/?model=gpt-4o",
        "runs status=error": "/?status=error",
        "runs errors only": "/?errors=1",
        "runs node=agent:agent (prefix)": "/?node=agent:agent",
        "runs node=absent (matches none)": "/?node=absent",
        "runs deep page (cursor)": f"/?before={deep_run}",
        "run page, long stream": f"/runs/{long_run}",
    }


def time_pages(url: str, paths: dict[str, str], rounds: int) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, float]] = {}
    for name, path in paths.items():
        timed_get(url + path)  # templates compiled, caches warm
        samples = [timed_get(url + path) for _ in range(rounds)]
        figures[name] = {
            "server_ms": statistics.median(s for s, _ in samples),
            "client_ms": statistics.median(c for _, c in samples),
        }
        print(f"  {name:36s} server {figures[name]['server_ms']:7.1f} ms   "
              f"client {figures[name]['client_ms']:7.1f} ms")  # fmt: skip
    return figures


def browser_page(url: str, rounds: int) -> dict[str, float] | None:
    """Navigation to the timeline on screen, and to the load event, in headless Chromium."""
    reason = chromium_missing()
    if reason is not None:
        print(f"  (browser skipped: {reason})")
        return None
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only with a browser

    ready: list[float] = []
    loaded: list[float] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        for _ in range(rounds + 1):
            began = time.perf_counter()
            page.goto(url, wait_until="commit")
            page.locator("#stream span").last.wait_for(state="visible")
            ready.append((time.perf_counter() - began) * 1000)
            page.wait_for_load_state("load")
            loaded.append(page.evaluate(
                "performance.getEntriesByType('navigation')[0].loadEventEnd"
            ))  # fmt: skip
        browser.close()
    figures = {"ready_ms": statistics.median(ready[1:]), "load_ms": statistics.median(loaded[1:])}
    print(f"  long run page in Chromium: timeline on screen {figures['ready_ms']:.0f} ms, "
          f"load event {figures['load_ms']:.0f} ms")  # fmt: skip
    return figures


def measure(url: str, args: argparse.Namespace, browser: bool) -> dict[str, Any]:
    with EventLog(url) as log:
        began = time.perf_counter()
        long_run, deep_run = fill(log, args.runs, args.tokens, args.long_tokens)
        events = args.runs * (args.tokens + 2) + args.long_tokens + 2
        print(f"  {args.runs:,} runs, {events:,} events written in "
              f"{time.perf_counter() - began:.1f} s")  # fmt: skip
        with serving(create_app(log)) as viewer:
            paths = pages(long_run, deep_run)
            report: dict[str, Any] = {"pages": time_pages(viewer, paths, args.rounds)}
            if browser:
                report["browser"] = browser_page(f"{viewer}/runs/{long_run}", args.rounds)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--long-tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", default=POSTGRES_URL)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        print("SQLite")
        report["sqlite"] = measure(f"sqlite:///{folder}/ui.db", args, browser=True)
    postgres = postgres_schema_url(args.postgres)
    if postgres is not None:
        url, drop = postgres
        try:
            print("PostgreSQL")
            report["postgresql"] = measure(url, args, browser=False)
        finally:
            drop()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
