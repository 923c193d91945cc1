"""The pytest plugin: a test's model runs answered from its recorded cassette.

Loaded by the ``pytest11`` entry point ``synthora`` (no conftest needed)::

    @pytest.mark.synthora                 # also on a class, or a module's pytestmark
    def test_capital(synthora_cassette):
        assert "Paris" in agent.ask("What is the capital of France?")

Every run made while the test runs (a backend's, or an observed openai / anthropic client's,
including clients constructed during the test, which are observed for its duration) is answered
from ``<cassettes>/<test module stem>/<test name>.jsonl``, a ``synthora export`` file. Record it
with ``--synthora-record=once``; ``none``, the default, replays only, and a request the cassette
does not answer fails the test with the closest recorded request and how it differs. The modes
are pytest-recording's; `synthora.testing.cassettes` says what each does. ``--synthora-cassettes
DIR`` moves the cassettes from ``tests/cassettes`` under the rootdir (a relative DIR is taken
from the directory pytest was started in).

The cassette's file name is the test's name as pytest shows it, parametrize ids included (a
method's prefixed with its class: ``TestAgent.test_plan``). Characters other than ASCII letters,
digits and ``_ - . [ ]`` become ``_``, and a name so changed, or longer than 120 characters, is
cut there and ends with 8 hex digits of its SHA-256, so two ids never share a file.

Unmarked tests are left as they are: the event log and its database are loaded only when a marked
test first runs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import pytest

if TYPE_CHECKING:
    from synthora.storage.log import EventLog
    from synthora.testing.cassettes import Cassette

__all__ = ["RECORD_MODES", "RecordMode", "cassette_file_name", "synthora_cassette"]

RecordMode = Literal["none", "once", "new_episodes", "all"]
RECORD_MODES: tuple[RecordMode, ...] = get_args(RecordMode)

_DEFAULT_FOLDER = Path("tests", "cassettes")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\[\]-]")
_LONGEST = 120
_CASSETTE: pytest.StashKey[Cassette] = pytest.StashKey()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("synthora", "Synthora: model runs answered from recorded cassettes")
    group.addoption(
        "--synthora-record",
        choices=RECORD_MODES,
        default="none",
        help="none (default): replay only, a request not recorded fails the test; once: record "
        "a cassette that does not exist yet; new_episodes: record the requests a cassette lacks; "
        "all: record every cassette anew",
    )
    group.addoption(
        "--synthora-cassettes",
        metavar="DIR",
        help="where cassettes are (default: tests/cassettes under the rootdir)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "synthora: answer the model runs of the test from its cassette "
        "(see --synthora-record and the synthora_cassette fixture)",
    )


@pytest.fixture(autouse=True)
def _synthora_marked(request: pytest.FixtureRequest) -> None:
    """A marked test plays its cassette; for any other, one marker lookup."""
    if request.node.get_closest_marker("synthora") is not None:
        request.getfixturevalue("synthora_cassette")


@pytest.fixture
def synthora_cassette(request: pytest.FixtureRequest) -> Iterator[EventLog]:
    """The test's cassette as an event log: the recorded runs that answer the test (or, while
    it is recorded anew, its runs as they are recorded). Needs ``@pytest.mark.synthora``."""
    if request.node.get_closest_marker("synthora") is None:
        pytest.fail(
            "the synthora_cassette fixture needs the test marked @pytest.mark.synthora",
            pytrace=False,
        )
    from synthora.testing.cassettes import Cassette  # noqa: PLC0415 - see the module docstring

    config = request.config
    path = _cassette_path(request)
    try:
        shown = str(path.relative_to(config.rootpath))
    except ValueError:
        shown = str(path)
    cassette = Cassette(path, config.getoption("synthora_record"), shown=shown)
    with cassette.playing() as log:
        request.node.stash[_CASSETTE] = cassette
        yield log


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Fail a test whose code caught a request its cassette does not answer (the test's own
    failure, if it has one, is reported as it is)."""
    result = yield
    cassette = item.stash.get(_CASSETTE, None)
    if cassette is not None and cassette.misses:
        pytest.fail(
            f"the code under test caught a request its cassette does not answer:\n"
            f"{cassette.misses[0]}",
            pytrace=False,
        )
    return result


def cassette_file_name(test_name: str) -> str:
    """The file name of a test's cassette: its name, made safe for any file system."""
    safe = _UNSAFE.sub("_", test_name)
    if safe != test_name or len(safe) > _LONGEST:
        digest = hashlib.sha256(test_name.encode()).hexdigest()[:8]
        safe = f"{safe[:_LONGEST]}-{digest}"
    return f"{safe}.jsonl"


def _cassette_path(request: pytest.FixtureRequest) -> Path:
    config = request.config
    option: str | None = config.getoption("synthora_cassettes")
    if option is None:
        folder = config.rootpath / _DEFAULT_FOLDER
    else:
        folder = config.invocation_params.dir / Path(option).expanduser()
    item: pytest.Item = request.node
    names = [node.name for node in item.listchain() if isinstance(node, pytest.Class)]
    return folder / item.path.stem / cassette_file_name(".".join([*names, item.name]))
