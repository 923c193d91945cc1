"""The distribution installs synthora.telemetry and synthora.storage, never top-level ones."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

ONLY_THE_DEPENDENCIES = (
    "import runpy, sys;"
    f"sys.path[1:1] = {sorted({sysconfig.get_path('purelib'), sysconfig.get_path('platlib')})!r};"
    "sys.argv = sys.argv[1:];"
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)
"""For ``python -S -c``: `python -m MODULE ARGS` as it runs where synthora's dependencies are
installed but not synthora (site-packages on the path, its .pth files, synthora's, not run)."""


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
    assert len(names) == len(set(names)), "each file once"
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


@pytest.mark.parametrize("installed", [True, False], ids=["installed", "dependencies-only"])
def test_the_checkout_runs_from_its_root(tmp_path: Path, installed: bool) -> None:
    """In the repository root, whose synthora/ comes first on sys.path, `python -m synthora`
    and `python -m pytest` find synthora.storage and synthora.telemetry, whether synthora is
    installed or only its dependencies are."""

    def python_m(*argv: str) -> subprocess.CompletedProcess[str]:
        command = ["-m", *argv] if installed else ["-S", "-c", ONLY_THE_DEPENDENCIES, *argv]
        return subprocess.run(
            [sys.executable, *command],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    usage = python_m("synthora", "--help")
    assert (usage.returncode, usage.stderr) == (0, "")
    assert "import" in usage.stdout
    demo = python_m("synthora", "--db", f"sqlite:///{tmp_path / 'demo.db'}", "demo")
    assert demo.returncode == 0, demo.stderr
    assert "Traceback" not in demo.stderr
    tests = python_m("pytest", "-q", "-p", "no:cacheprovider", "tests/test_public_surface.py")
    assert tests.returncode == 0, tests.stdout + tests.stderr
