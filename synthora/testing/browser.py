"""Headless Chromium for tests of pages (the viewer's): Debian's browser, installed if need be.

Browser-testing tools download a browser build of their own; where only package registries can
be reached, Debian's ``chromium`` is the browser, and Playwright drives it::

    reason = chromium_missing()        # None once /usr/bin/chromium is there
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["CHROMIUM", "LAUNCH_ARGS", "chromium_missing"]

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = (
    "--no-sandbox",  # Chromium's sandbox refuses to run as root
    "--disable-gpu",
    "--no-first-run",
    # no calls home: on a machine with no network they are refused, many at a time
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
_INSTALL_TIMEOUT_S = 900


def chromium_missing() -> str | None:
    """None once Chromium is installed (installing it with apt-get when it is missing and this
    process runs as root); otherwise why it cannot be had, to skip with."""
    if Path(CHROMIUM).exists():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"no Chromium at {CHROMIUM}, and only root can install it: apt-get install chromium"
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=environment,
            timeout=_INSTALL_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            said = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return f"Chromium could not be installed ({' '.join(command)}: {said})"
    return None if Path(CHROMIUM).exists() else f"apt-get installed chromium, but not at {CHROMIUM}"
