"""``model.json``: everything a run folder needs to predict on new data, as plain JSON (no pickle).

The model spec (layer sizes and every [model] key), what the data step did (train-split
standardization statistics), the user's label of each class, a table's feature columns, the
plugins the run imported, and a name for each replica. A folder made before this file existed is
rebuilt from its config.toml (the data step is deterministic), or a CheckpointError says what is missing.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from ..datasets.preprocess import Standardize
from ..errors import CheckpointError
from ..config import RunConfig, as_table, load_saved
from ..boundary.files import write_atomic
from .build import build
from .runlog import RECORD

FORMAT, VERSION = "jaxbp-run", 2  # 2: a sha256 of its own content, the run identity, the params digest


def replica_labels(config: RunConfig, replicas: int) -> list[str]:
    """What tells replica r apart: its learning rate (a list of rates) and/or its seed offset (train.replicas > 1)."""
    rates = config.optimizer.rates * (replicas // len(config.optimizer.rates))
    seeds = config.train.replicas > 1
    return [" ".join(([f"lr {rates[r]:g}"] if len(set(rates)) > 1 else []) + ([f"seed +{r}"] if seeds else []))
            or f"replica {r}" for r in range(replicas)]


def make_record(config: RunConfig, data, model, replicas: int, plugins=()) -> dict:
    spec = {"sizes": [model.d_in, *config.model.hidden, model.d_out],
            **{key: value for key, value in as_table(config.model).items()
               if key not in ("hidden", "layers", "preset") and value is not None}}  # what jaxbp.mlp takes
    if config.model.tables:  # what jaxbp.networks.from_tables takes
        spec = {"input_shape": list(model.input_shape), "layers": list(config.model.tables), "k": model.d_out,
                "loss": config.model.loss, "rule": config.model.rule,
                **{key: value for key, value in as_table(config.model).items() if key in ("l2", "l1", "regularize_biases")}}
    return {"format": FORMAT, "version": VERSION, "model": spec,
            "standardize": None if data.standardize is None else data.standardize.to_json(),
            "classes": list(data.classes), "features": list(data.features),
            "regression": bool(np.asarray(data.y_train).dtype.kind == "f"),
            "target_standardize": None if getattr(data, "target_standardize", None) is None
            else data.target_standardize.to_json(),
            "label_column": config.data.label_column, "dataset": data.name,
            "plugins": list(plugins), "replicas": replicas, "replica_labels": replica_labels(config, replicas)}


def digest(record: dict) -> str:
    """sha256 of the record's content (all but its own ``sha256``), as canonical strict JSON."""
    content = {key: value for key, value in record.items() if key != "sha256"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, allow_nan=False).encode()).hexdigest()


def write_record(run_dir: str, record: dict) -> None:
    record = {**record, "version": VERSION}
    record["sha256"] = digest(record)
    lines = ",\n".join(f" {json.dumps(key)}: {json.dumps(value, allow_nan=False)}"  # strict JSON, a key a line
                       for key, value in record.items())
    write_atomic(os.path.join(run_dir, RECORD), ("{\n" + lines + "\n}\n").encode())


def recorded_plugins(run_dir) -> list[str]:
    """The plugins a run imported (none for a folder without model.json)."""
    path = os.path.join(os.fspath(run_dir), RECORD)
    return _read(path)["plugins"] if os.path.isfile(path) else []


def read_record(run_dir) -> dict:
    """The run's model.json; for an older folder without one, the same facts rebuilt from its config.toml."""
    run_dir = os.fspath(run_dir)
    path = os.path.join(run_dir, RECORD)
    if os.path.isfile(path):
        return _read(path)
    config_path = os.path.join(run_dir, "config.toml")
    if not os.path.isfile(config_path):
        what = "no such folder" if not os.path.isdir(run_dir) else f"it has neither {RECORD} nor config.toml"
        raise CheckpointError(f"cannot load run {run_dir}: {what}. Point at a folder made by `jaxbp train --out DIR`")
    try:
        run = build(load_saved(config_path))
    except Exception as error:
        raise CheckpointError(f"run {run_dir} has no {RECORD} (it predates recorded preprocessing and labels) and "
                              f"rebuilding it from config.toml failed: {error}. Make the dataset (or plugin) "
                              f"available again, or retrain the run") from None
    return make_record(run.config, run.data, run.model, run.replicas)


def standardizer(record: dict, key: str = "standardize") -> Standardize | None:
    """The recorded input statistics, or with key="target_standardize" a regression's target statistics."""
    return None if record.get(key) is None else Standardize.from_json(record[key])


def _not_json(name: str):
    raise ValueError(f"it holds {name}, which strict JSON does not allow")


def _read(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as file:
            record = json.load(file, parse_constant=_not_json)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path} is unreadable or not JSON ({error}); retrain the run, or restore the "
                              f"file from a backup") from None
    missing = [key for key in ("model", "standardize", "classes", "features", "plugins", "replicas") if key not in record]
    if record.get("format") != FORMAT or missing:
        raise CheckpointError(f"{path} is not a {FORMAT} record (missing: {', '.join(missing) or 'format'}); "
                              f"retrain the run, or restore the file from a backup")
    if record.get("version", 1) != 1 and record.get("sha256") != digest(record):  # version 1 predates the digest
        raise CheckpointError(f"{path} does not match its sha256 (it was edited or damaged, e.g. a digit of "
                              f"standardize); restore it from a backup, or rebuild the run's final files with "
                              f"jaxbp train --resume {os.path.dirname(path) or '.'}")
    return record
