"""Every experiment script runs at its smoke size and writes its JSON and figures, so none rots silently.

The scripts are found by pattern (``experiments/NN_name.py``): a new experiment is covered with no new test.
"""

import importlib.util
import json
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
SCRIPTS = sorted(EXPERIMENTS.glob("[0-9][0-9]_*.py"))


def _load(script: Path):
    spec = importlib.util.spec_from_file_location(f"experiment_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_experiments_are_found():
    assert len(SCRIPTS) >= 8, [s.name for s in SCRIPTS]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.stem)
def test_experiment_smoke(script, tmp_path, monkeypatch, restore_registries):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))  # the scripts import experiments/_common.py
    module = _load(script)
    assert module.__doc__ and "Question" in module.__doc__ and "Answer" in module.__doc__
    module.main(smoke=True, out_dir=tmp_path)

    record = json.loads((tmp_path / f"{script.stem}.json").read_text())
    assert record["experiment"] == script.stem and record["smoke"] is True
    assert record["targets"], "an experiment states at least one target"
    for name, target in record["targets"].items():
        assert isinstance(target["passed"], bool), name
        assert {"value", "target"} <= set(target), name
    assert isinstance(record["passed"], bool)
    timing = json.loads((tmp_path / "timing.json").read_text())  # kept apart, so reruns leave the record alone
    assert timing["experiment"] == script.stem and timing["runtime_s"] > 0
    assert not {"runtime_s", "compile_s", "train_s", "speedup"} & (set(record) | set(record["results"]))
    figures = list(tmp_path.glob("*.png"))
    assert figures, "an experiment writes at least one figure"
    assert all(f.stat().st_size > 1000 for f in figures)
