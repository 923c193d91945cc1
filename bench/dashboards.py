"""How long each dashboard panel's query takes on a large event log in PostgreSQL.

usage: python bench/dashboards.py [--events 1000000] [--tokens 48] [--postgres URL]

Fills a fresh PostgreSQL schema with synthetic streamed runs spread over the last six hours
(`--events` events in all, `--tokens` per run, 5% failed, 2% interrupted), then runs every panel
of every dashboard over that range, as Grafana would, and prints the median of three runs each.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

from event_log import NODE, postgres_schema_url
from grafana_macros import grafana_sql
from sqlalchemy import create_engine, text

from synthora.events import EndEvent, ErrorEvent, Event, StartEvent, TokenEvent, Usage
from synthora.messages import assistant, user
from synthora.storage import EventLog

DASHBOARDS = Path(__file__).resolve().parent.parent / "dashboards" / "json"
MODELS = ("gpt-4o", "gpt-4o-mini", "llama-3-70b")


def synthetic_run(ts: int, tokens: int, rng: random.Random) -> list[Event]:
    run_id, model = str(uuid.uuid4()), rng.choice(MODELS)
    events: list[Event] = [
        StartEvent(run_id=run_id, seq=0, ts=ts, node=NODE, operation="chat", model=model,
                   service="bench", stream=True, messages=(user("q"),))
    ]  # fmt: skip
    gap = rng.randint(5_000_000, 50_000_000)
    events += [
        TokenEvent(run_id=run_id, seq=i + 1, ts=ts + (i + 1) * gap, node=NODE, index=i, text=" w")
        for i in range(tokens)
    ]
    end_ts = ts + (tokens + 1) * gap
    duration = (end_ts - ts) / 1e9
    roll = rng.random()
    if roll < 0.05:
        events.append(ErrorEvent(run_id=run_id, seq=tokens + 1, ts=end_ts, node=NODE,
                                 error_type=rng.choice(("RateLimitError", "APITimeoutError")),
                                 message="x", status_code=429, stage="stream",
                                 duration_s=duration))  # fmt: skip
    else:
        events.append(EndEvent(run_id=run_id, seq=tokens + 1, ts=end_ts, node=NODE,
                               output=assistant(" w" * tokens),
                               finish_reason="interrupted" if roll < 0.07 else "stop",
                               usage=Usage(input_tokens=20, output_tokens=tokens),
                               duration_s=duration, time_to_first_token_s=gap / 1e9))  # fmt: skip
    return events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    schema = postgres_schema_url(args.postgres)
    if schema is None:
        return 1
    url, drop = schema
    rng = random.Random(7)
    end = datetime.datetime.now(datetime.UTC)
    start = end - datetime.timedelta(hours=6)
    runs = args.events // (args.tokens + 2)
    span_ns = int((end - start).total_seconds() * 1e9)
    try:
        with EventLog(url) as log:
            began = time.perf_counter()
            base = int(start.timestamp() * 1e9)
            log.write(
                event
                for n in range(runs)
                for event in synthetic_run(base + n * span_ns // runs, args.tokens, rng)
            )
            print(f"{runs:,} runs, {runs * (args.tokens + 2):,} events written in "
                  f"{time.perf_counter() - began:.1f} s")  # fmt: skip
        engine = create_engine(url)
        with engine.connect() as connection:
            connection.execute(text("ANALYZE"))
            for path in sorted(DASHBOARDS.glob("*.json")):
                dashboard = json.loads(path.read_text())
                variables = {
                    v["name"]: [str(r) for r in connection.execute(text(v["query"])).scalars()]
                    for v in dashboard["templating"]["list"]
                    if v["type"] == "query"
                }
                for panel in dashboard["panels"]:
                    sql = grafana_sql(panel["targets"][0]["rawSql"], start, end, variables)
                    times = []
                    for _ in range(3):
                        began = time.perf_counter()
                        connection.execute(text(sql)).all()
                        times.append((time.perf_counter() - began) * 1000)
                    print(f"  {panel['title']:40s} {statistics.median(times):8.1f} ms")
        engine.dispose()
    finally:
        drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
