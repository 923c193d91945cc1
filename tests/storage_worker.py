"""A child process for the storage tests: streamed runs against the test server, into a log.

usage: python tests/storage_worker.py runs|crash|abandon|outage|journaled DB_URL BASE_URL COUNT
``runs`` does COUNT streamed runs and exits; ``crash`` does COUNT runs, printing ``done RUN_ID``
after each returns, then starts a slow run, prints ``streaming RUN_ID`` once its first chunk is
committed, and waits to be killed; ``abandon`` does the same but then simply exits, leaving the
stream and the log open for the interpreter's exit to deal with; ``outage`` prints ``ready``,
waits for a line (the test cuts the database meanwhile), does COUNT runs printing ``done RUN_ID``
after each, prints ``spooled`` and waits to be killed; ``journaled`` does COUNT runs, printing
``done RUN_ID`` after each, with a writer that commits only hourly, and waits to be killed.
"""

from __future__ import annotations

import os
import sys

from synthora import OpenAIChatBackend
from synthora.storage import EventLog

_STILL_OPEN: list[object] = []


def main(mode: str, db_url: str, base_url: str, count: int) -> None:
    log = EventLog(db_url, flush_interval=3600 if mode == "journaled" else 0.05).attach()
    backend = OpenAIChatBackend.default(
        "worker", api_key="worker-key", base_url=base_url, stream=True, max_retries=0
    )
    if mode == "outage":
        print("ready", flush=True)
        sys.stdin.readline()  # the test cuts the database off, then says go
    for i in range(count):
        stream = backend.run(f"process {os.getpid()} run {i}")
        list(stream)
        if mode != "runs":
            print(f"done {stream.run_id}", flush=True)
    if mode == "outage":
        print("spooled", flush=True)
    if mode in ("outage", "journaled"):
        sys.stdin.read()
    if mode in ("crash", "abandon"):
        slow = OpenAIChatBackend.default(
            "slow-crash", api_key="worker-key", base_url=base_url, stream=True, max_retries=0
        )
        stream = slow.run("never finished")
        next(stream)
        log.flush()
        print(f"streaming {stream.run_id}", flush=True)
        if mode == "abandon":
            _STILL_OPEN.append(stream)  # alive until the interpreter exits, as a global would be
            return
        sys.stdin.read()
    log.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
