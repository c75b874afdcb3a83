"""Golden outputs (tests/golden/capture.py): runs recomputed now must match the stored JSON byte for byte.

The cheap cases run by default; every case (each bundled card on both PIM configs, cycle fidelity, the
overlap schedule, speculative decoding, encoder-decoder, narrow formats, sweep rows) under ``-m slow``.
When a change is meant to move a figure, regenerate with ``python tests/golden/capture.py`` and name
the change in the commit.
"""

import importlib.util
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "golden"
_spec = importlib.util.spec_from_file_location("golden_capture", HERE / "capture.py")
capture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(capture)
ALL = list(capture.cases())


@pytest.fixture(scope="module", autouse=True)
def _own_traces(tmp_path_factory):
    with capture.private_trace_cache(str(tmp_path_factory.mktemp("graphs"))):
        yield


def _compare(name: str) -> None:
    stored = (HERE / f"{name}.json").read_text()
    assert capture.canonical(capture.cases()[name]()) == stored, f"{name} differs from its golden file"


@pytest.mark.parametrize("name", sorted(capture.CHEAP))
def test_golden_cheap(name):
    _compare(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ALL if n not in capture.CHEAP])
def test_golden_all(name):
    _compare(name)


def test_every_case_has_a_golden_file():
    assert sorted(p.stem for p in HERE.glob("*.json")) == sorted(ALL)
