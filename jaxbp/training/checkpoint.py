"""Checkpoints without pickle: one ``.npz`` of named leaves plus a JSON metadata string, written atomically.

A tree is stored leaf by leaf under its path name (``params.0.w``, ``opt_state.inner_state.0.trace.1.b``).
Loading never trusts the file for structure: the tree is rebuilt from a template (the arrays
or ``jax.ShapeDtypeStruct`` s that ``model.init`` / ``optimizer.init`` make for the same config)
and every leaf's name, shape and dtype must match it, or ``CheckpointError`` says which.
"""

from __future__ import annotations

import functools
import io
import json
import os
from typing import Any, NamedTuple

import jax
import numpy as np

from ..boundary import archive
from ..boundary.files import write_atomic
from ..errors import CheckpointError

FORMAT = "jaxbp-checkpoint"
VERSION = 1


class Checkpoint(NamedTuple):
    params: Any
    opt_state: Any
    step: int
    epoch: int
    key: jax.Array  # the run key; epoch e shuffles with fold_in(key, e)


def leaf_name(path) -> str:
    """A tree path as a dotted name: list index, dict key or NamedTuple field, joined by dots."""
    parts = []
    for entry in path:
        for attr in ("name", "key", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:
            parts.append(str(entry))
    return ".".join(parts)


def named_leaves(prefix: str, tree) -> dict[str, Any]:
    return {f"{prefix}.{leaf_name(path)}" if path else prefix: leaf
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def save_trees(path: str, trees: dict, meta: dict) -> None:
    """Save named trees (e.g. ``{"params": p, "opt_state": s}``) and ``meta`` to one .npz, atomically."""
    arrays = {}
    for prefix, tree in trees.items():
        arrays.update({name: np.asarray(leaf) for name, leaf in named_leaves(prefix, tree).items()})
    sums = archive.checksums(arrays)  # per array: catches what the zip CRC misses
    arrays["meta"] = np.array(json.dumps({"format": FORMAT, "version": VERSION, **meta, "sha256": sums}))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def load_trees(path: str, templates: dict) -> tuple[dict, dict]:
    """Read a .npz written by ``save_trees`` into the structure of ``templates``; returns (trees, meta)."""
    fix = "restart the run (jaxbp train --out NEW_DIR) or restore the file from a backup"
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path}; is this a jaxbp run folder? ({fix})")
    stored = archive.read_npz(path, CheckpointError, fix, "a jaxbp checkpoint")
    meta = _meta(path, stored.pop("meta", None), fix)
    if "sha256" in meta:
        archive.verify(path, stored, meta["sha256"], CheckpointError, fix)
    trees = {}
    for prefix, template in templates.items():
        leaves, treedef = jax.tree_util.tree_flatten(template)
        names = list(named_leaves(prefix, template))
        values = [_leaf(path, stored, name, leaf) for name, leaf in zip(names, leaves)]
        trees[prefix] = jax.tree_util.tree_unflatten(treedef, values)
    expected = {name for prefix, template in templates.items() for name in named_leaves(prefix, template)}
    extra = sorted(set(stored) - expected)
    if extra:
        raise CheckpointError(f"{path} holds {len(extra)} leaf/leaves the config does not make "
                              f"({', '.join(extra[:5])}): it was written for another model or optimizer; "
                              f"check the run folder's config.toml")
    return trees, meta


def _meta(path: str, stored, fix: str) -> dict:
    try:
        meta = json.loads(str(stored)) if stored is not None and stored.shape == () else None
    except ValueError as error:
        raise CheckpointError(f"checkpoint {path} has damaged metadata ({error}); {fix}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{path} is not a {FORMAT} version {VERSION} file; {fix}")
    return meta


def read_meta(path: str) -> dict:
    """The metadata of the checkpoint or params file at ``path`` (step, epoch, config fingerprint...)."""
    fix = "restore the file from a backup or restart the run"
    return _meta(path, archive.read_npz(path, CheckpointError, fix).get("meta"), fix)


def _leaf(path: str, stored: dict, name: str, template) -> np.ndarray:
    if name not in stored:
        raise CheckpointError(f"{path} lacks leaf {name!r} ({len(stored)} leaves stored): it was written for "
                              f"another model or optimizer; check the run folder's config.toml")
    value, shape, dtype = stored[name], tuple(template.shape), np.dtype(template.dtype)
    if value.shape != shape or value.dtype != dtype:
        floats = value.dtype != dtype and {value.dtype.kind, dtype.kind} == {"f"}
        hint = " (turn jax_enable_x64 on or off as it was when the checkpoint was written)" if floats else ""
        raise CheckpointError(f"{path}: leaf {name!r} is {value.dtype}{list(value.shape)} but the config makes "
                              f"{dtype}{list(shape)}{hint}; the checkpoint does not belong to this config")
    return value


def save_checkpoint(path: str, ckpt: Checkpoint, extra: dict | None = None) -> None:
    """Params, optimizer state, step, epoch and run key (as ``jax.random.key_data``), atomically; ``extra``
    goes into the metadata (the run's config and its fingerprint)."""
    meta = {"step": int(ckpt.step), "epoch": int(ckpt.epoch), "key_impl": str(jax.random.key_impl(ckpt.key)),
            **(extra or {})}
    save_trees(path, {"params": ckpt.params, "opt_state": ckpt.opt_state, "key": jax.random.key_data(ckpt.key)}, meta)


@functools.lru_cache(maxsize=8)
def _key_data_shape(shape: tuple, dtype) -> jax.ShapeDtypeStruct:
    return jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(shape, dtype))


def load_checkpoint(path: str, params, opt_state, key) -> Checkpoint:
    """Load into the structure of templates ``params``, ``opt_state`` and ``key`` (arrays or shape structs)."""
    key_data = _key_data_shape(tuple(key.shape), key.dtype)
    trees, meta = load_trees(path, {"params": params, "opt_state": opt_state, "key": key_data})
    try:
        key = jax.random.wrap_key_data(trees["key"], impl=meta["key_impl"])
        step, epoch = int(meta["step"]), int(meta["epoch"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} has bad metadata ({error}); restart the run") from None
    params, opt_state = jax.tree.map(jax.numpy.asarray, (trees["params"], trees["opt_state"]))
    return Checkpoint(params, opt_state, step, epoch, key)
