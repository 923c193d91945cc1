"""Do throwaway backends free their handlers? Memory after making and dropping many of them.

usage: python bench/handler_memory.py [--backends 2000] [--warmup 200] [--json FILE]

Each backend (with its own SDK clients, ~1.7 MiB, as users make them) gets a callback handler
that refers back to it, as an agent's handler often holds its agent; it runs once against the
OpenAI-compatible test server (in a process of its own, so its memory is not counted) and is
dropped, a quarter of them after removing their handler. After a warm-up batch, the resident
memory is read before and after the measured batch (`rss_mib`): what stays is what leaked.
Exit 1 if more than ``--limit-mib`` stayed or any backend or handler outlived its batch.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import resource
import sys
import weakref
from pathlib import Path
from typing import Any

from stream_overhead import start_server

from synthora import BaseCallBackHandler, Node, NodeType, OpenAIChatBackend, user
from synthora.events import EndEvent

AGENT = Node(name="bench", type=NodeType.AGENT)


class Keeper(BaseCallBackHandler):
    """A handler holding its backend, as an agent's handler holds its agent."""

    def __init__(self) -> None:
        self.backend: OpenAIChatBackend | None = None
        self.replies = 0

    def on_llm_end(self, event: EndEvent) -> None:
        self.replies += 1


def rss_mib() -> float:
    """The resident set size now (Linux), else the peak (what other systems report).

    A full collection first; on glibc, memory freed but kept by the allocator (each SDK client
    loads and frees a certificate store) is then handed back, so what is read is still in use.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def batch(base_url: str, size: int) -> list[weakref.ref[Any]]:
    """Make, run and drop `size` backends; weak references to them and their handlers."""
    left: list[weakref.ref[Any]] = []
    for i in range(size):
        handler = Keeper()
        backend = OpenAIChatBackend.default(
            "bench", AGENT, api_key="bench", base_url=base_url, max_retries=0, handlers=[handler]
        )
        handler.backend = backend
        backend.run([user(f"run {i}")])
        if i % 4 == 0:
            backend.remove_handler(handler)
        left += [weakref.ref(backend), weakref.ref(handler)]
        del backend, handler
    return left


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200, help="backends made before measuring")
    parser.add_argument("--limit-mib", type=float, default=20.0)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON here")
    args = parser.parse_args()
    process, base_url = start_server(5)
    try:
        batch(base_url, args.warmup)  # imports, caches, the allocator's arenas
        before = rss_mib()
        left = batch(base_url, args.backends)
        after = rss_mib()
    finally:
        process.terminate()
        process.wait(timeout=10)
    alive = sum(ref() is not None for ref in left)
    report = {
        "backends": args.backends,
        "rss_before_mib": round(before, 1),
        "rss_after_mib": round(after, 1),
        "rss_growth_mib": round(after - before, 1),
        "alive_after": alive,
    }
    print(
        f"{args.backends} backends with a handler each, made, run and dropped: resident memory "
        f"{before:.1f} -> {after:.1f} MiB ({after - before:+.1f} MiB); "
        f"{alive} backends or handlers still alive"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if alive == 0 and after - before <= args.limit_mib else 1


if __name__ == "__main__":
    sys.exit(main())
