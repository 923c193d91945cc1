"""The distribution installs synthora.telemetry and synthora.storage, never top-level ones."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_installed_package_maps_subpackages(tmp_path: Path) -> None:
    """Outside the repo, synthora.telemetry imports and no top-level telemetry/storage exists."""
    check = (
        "import importlib.util, synthora.telemetry, synthora.storage, synthora.testing.server;"
        "assert importlib.util.find_spec('telemetry') is None;"
        "assert importlib.util.find_spec('storage') is None"
    )
    subprocess.run([sys.executable, "-c", check], cwd=tmp_path, check=True)


def test_wheel_contents(tmp_path: Path) -> None:
    """A normal wheel ships the mapped subpackages and py.typed, and no stray top level."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("synthora-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"synthora"}
    for required in (
        "synthora/py.typed",
        "synthora/telemetry/__init__.py",
        "synthora/storage/__init__.py",
        "synthora/models/openai_backend.py",
        "synthora/testing/server.py",
        "synthora/ui/templates/run.html",  # the viewer's pages and assets are package data
        "synthora/ui/static/viewer.js",
        "synthora/ui/static/viewer.css",
    ):
        assert required in names
