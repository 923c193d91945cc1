"""Every benchmark, one command, one result file to compare across commits.

usage: python bench/run_all.py [--json bench-results.json] [--quick]

Runs each script in its own process (stream_overhead, wires, peers, drop_in, scale, event_log,
durable_log, replay, ui_pages, handler_memory, and dashboards when PostgreSQL answers), prints
their tables as they finish, and writes one JSON document: the commit, the date, the Python and
package versions, and each script's figures.
`--quick` runs every script at a small size (minutes, not tens of minutes).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
FULL: dict[str, list[str]] = {
    "stream_overhead": [],
    "wires": [],
    "peers": [],
    "drop_in": [],
    "scale": [],
    "event_log": [],
    "durable_log": [],
    "replay": [],
    "ui_pages": [],
    "handler_memory": [],
}
QUICK: dict[str, list[str]] = {
    "stream_overhead": ["--tokens", "500", "--rounds", "3", "--plain-runs", "10"],
    "wires": ["--tokens", "500", "--rounds", "3"],
    "peers": ["--tokens", "500", "--rounds", "3"],
    "drop_in": ["--tokens", "500", "--rounds", "3", "--plain-runs", "10"],
    "scale": ["--levels", "1,10,100", "--tokens", "20"],
    "event_log": ["--events", "50000", "--read-events", "100000", "--rounds", "3"],
    "durable_log": ["--runs", "100", "--rounds", "3", "--pairs", "4"],
    "replay": ["--runs", "200"],
    "ui_pages": ["--runs", "2000", "--rounds", "3"],
    "handler_memory": ["--backends", "300", "--warmup", "50"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="bench-results.json", metavar="FILE")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=HERE,
        check=False,
    ).stdout.strip()
    results: dict[str, object] = {
        "commit": commit or None,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "versions": {name: version(name) for name in ("synthora", "openai", "msgspec")},
        "quick": args.quick,
    }
    with tempfile.TemporaryDirectory() as folder:
        for script, argv in (QUICK if args.quick else FULL).items():
            output = Path(folder) / f"{script}.json"
            print(f"\n== {script}", flush=True)
            done = subprocess.run(
                [sys.executable, str(HERE / f"{script}.py"), *argv, "--json", str(output)],
                cwd=HERE,
                check=False,
            )
            results[script] = (
                json.loads(output.read_text())
                if done.returncode == 0
                else {"failed": done.returncode}
            )
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
