"""What keeps a run honest: divergence found at each epoch's end, metrics files that stay valid JSON,
a config fingerprint in every checkpoint, and SIGTERM handled like Ctrl-C (by every process at once).

Divergence costs no extra host sync: the jitted epoch reduces "are all params finite" to one bool
that comes back with the epoch's metrics, in the one ``device_get`` each epoch already makes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import signal
import threading

import jax
import jax.numpy as jnp
import numpy as np

from ..config import ADDED_LATER, RunConfig
from ..errors import CheckpointError, ConfigError, DivergenceError, Terminated

ON_NONFINITE = ("stop", "continue")
RESUMABLE = ("train.epochs", "train.checkpoint_every", "train.plots", "train.on_nonfinite",  # --set on --resume
             "train.devices", "train.replica_devices", "train.final_params")
STOPPING = threading.Event()  # set when a signal reaches the main thread (see jaxbp.cli.main's watchdog)
FLAG = "nonfinite"  # a metrics row or summary lists here the names whose values were NaN/Inf (written as null)


def all_finite(tree) -> jax.Array:
    """One bool: every leaf of ``tree`` finite (traced inside the epoch; reduced on device)."""
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def nonfinite_names(row: dict, params_finite=True) -> list[str]:
    """The metric names of ``row`` holding NaN/Inf, plus "params" when the params are not all finite."""
    names = [name for name, value in row.items()
             if isinstance(value, (float, list)) and not all(math.isfinite(v) for v in np.ravel(value))]
    return names + ([] if bool(np.all(params_finite)) else ["params"])


def json_safe(data):
    """``data`` with NaN/Inf floats as None, and, for a dict holding any, their names under ``"nonfinite"``."""
    if isinstance(data, dict):
        safe = {key: json_safe(value) for key, value in data.items()}
        bad = [key for key, value in data.items() if key != FLAG and _has_nonfinite(value)]
        if bad:
            safe[FLAG] = sorted(set(safe.get(FLAG, [])) | set(bad))
        return safe
    if isinstance(data, (list, tuple)):
        return [json_safe(value) for value in data]
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def _has_nonfinite(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    return isinstance(value, list) and any(_has_nonfinite(v) for v in value)


def dumps(data, **options) -> str:
    """Strict JSON (``allow_nan=False``): non-finite numbers become null and are flagged."""
    return json.dumps(json_safe(data), allow_nan=False, **options)


def from_json(data):
    """Stored JSON back in memory: a null metric is NaN again (so means and plots work)."""
    if isinstance(data, dict):
        return {key: from_json(value) for key, value in data.items()}
    if isinstance(data, list):
        return [from_json(value) for value in data]
    return math.nan if data is None else data


def diverged(epoch: int, names: list[str], kept_epoch: int, checkpoint: str | None, config: RunConfig,
             blame: str | None = None) -> DivergenceError:
    """The divergence error; ``blame`` (a backward's fault, found at the last finite params) replaces the advice
    to lower the learning rate."""
    where = (f"{checkpoint} holds epoch {kept_epoch}, the last finite one" if checkpoint and kept_epoch
             else "no checkpoint was saved (nothing finished finite)" if checkpoint else "nothing was saved")
    if blame:
        return DivergenceError(f"training diverged at epoch {epoch}: {', '.join(names)} became NaN/Inf; {where}. "
                               f"{blame[0].upper()}{blame[1:]}")
    return DivergenceError(
        f"training diverged at epoch {epoch}: {', '.join(names)} became NaN/Inf; {where}. {_advice(config)} and "
        f"start a new run, or set train.on_nonfinite = \"continue\" to train on regardless")


def _advice(config: RunConfig) -> str:
    """What to change when the steps are too large: the rate, and a private run's batch size."""
    batch = (f" or raise train.batch_size (now {config.train.batch_size}: DP-SGD's noise in each step's mean "
             f"gradient is noise_multiplier x clip_norm / batch)" if config.privacy.enabled else "")
    return f"Lower optimizer.learning_rate (now {_shown(config.optimizer.learning_rate)}){batch}"


class Rising:
    """A finite divergence: once a replica's train loss ends an epoch above its first epoch's and above twice its
    lowest, ``check`` returns one line of advice (once per run); overfitting raises the test loss, not this one."""

    def __init__(self, rows: list[dict]):
        self.first, self.low, self.said = None, None, False
        for row in rows:  # a resumed run's epochs so far
            self.check(row, None)
        self.said = False

    def check(self, row: dict, config: RunConfig | None) -> str | None:
        loss = np.atleast_1d(np.asarray(row.get("train_loss", np.nan), dtype=float))
        if self.first is None:
            self.first, self.low = loss, loss
            return None
        self.low = np.fmin(self.low, loss)
        rising = np.flatnonzero((loss > self.first) & (loss > 2 * self.low))
        if self.said or not rising.size or config is None:
            return None
        self.said = True
        which = f"replica {', '.join(map(str, rising))}'s " if loss.size > 1 else ""
        r = rising[0]
        return (f"warning: {which}train loss rose to {loss[r]:.3g} at epoch {row['epoch']}, above epoch 1's "
                f"{self.first[r]:.3g} and over twice its lowest ({self.low[r]:.3g}): the steps are too large. "
                f"{_advice(config)}")


def _shown(value):
    return list(value) if isinstance(value, tuple) else value  # as in config.toml


def require_finite(state, path: str) -> None:
    """Refuse to resume from a checkpoint whose params or optimizer state hold NaN/Inf."""
    if not bool(all_finite((state.params, state.opt_state))):
        raise CheckpointError(f"checkpoint {path} holds NaN/Inf params or optimizer state (the run diverged); it "
                              f"cannot be resumed. Start a new run with a lower optimizer.learning_rate")


def _flat(config: dict, prefix: str = "") -> dict[str, str]:
    """Dotted key -> its value as JSON; a nested table's keys are dotted further (train.early_stopping.patience)."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value, sort_keys=True)
    return flat


def fingerprint(config: RunConfig | dict, resumable=RESUMABLE) -> str:
    """sha256 of the resolved config, leaving out the keys that may change on resume."""
    config = config.to_dict() if isinstance(config, RunConfig) else config
    kept = {key: value for key, value in _flat(config).items() if key not in resumable}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def config_meta(config: RunConfig) -> dict:
    """What a checkpoint's metadata carries of its config: the fingerprint and the resolved config itself."""
    return {"config_sha256": fingerprint(config), "config": config.to_dict()}


def check_same_config(meta: dict, config: RunConfig, run_dir: str) -> None:
    """Refuse ``--resume`` when config.toml was edited since the checkpoint (apart from RESUMABLE keys).

    A key the checkpoint's config lacks (one added to jaxbp since) is the same when it is at its value for old
    runs (``ADDED_LATER``), else its default.
    """
    if "config_sha256" not in meta or meta["config_sha256"] == fingerprint(config):
        return  # a checkpoint from before fingerprints cannot be compared
    stored, now, default = _flat(meta.get("config", {})), _flat(config.to_dict()), _flat(RunConfig().to_dict())
    default.update({key: json.dumps(value, sort_keys=True) for key, value in ADDED_LATER.items()})
    changed = [f"{key} ({stored[key]} in the checkpoint, {now.get(key, 'absent')} now)"
               for key in sorted(stored) if key not in RESUMABLE and stored[key] != now.get(key)]
    added = [f"{key} (absent in the checkpoint, {now[key]} now)" for key in sorted(set(now) - set(stored))
             if key not in RESUMABLE and now[key] != default.get(key)]
    if stored and not changed and not added:
        return  # only keys added since, at their defaults
    raise ConfigError(
        f"{run_dir}/config.toml differs from the config its checkpoint was trained under: "
        f"{'; '.join(changed + added) if stored else 'the fingerprint differs'}. --resume continues the same run (it may change only "
        f"{', '.join(RESUMABLE)}): undo the edit, or start a new run with --config {run_dir}/config.toml --out NEW_DIR")


@contextlib.contextmanager
def interrupts(several: bool = False):
    """While inside, SIGTERM raises ``Terminated`` (a KeyboardInterrupt) once, so it saves like Ctrl-C.

    With ``several`` processes a signal reaches one of them, and a process that stopped alone would leave
    the others waiting in a collective. So both signals are only recorded, and the yielded ``pending()``
    gives the recorded interrupt (None: none) for the run loop to agree on at the epoch's end; a second
    signal raises at once, as an impatient Ctrl-C should.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    fired = []

    def handler(signum, frame):
        STOPPING.set()  # the main thread runs Python again: the command line's watchdog stands down
        if not fired:
            fired.append(Terminated("terminated by SIGTERM") if signum == signal.SIGTERM else KeyboardInterrupt())
            if not several:
                raise fired[0]
        elif several:
            raise fired[0]  # a second signal: stop this process now
        # one process: a second SIGTERM while the first one saves is ignored (SIGKILL still works)

    caught = (signal.SIGTERM, signal.SIGINT) if several else (signal.SIGTERM,)
    previous = {signum: signal.signal(signum, handler) for signum in caught}
    try:
        yield lambda: fired[0] if fired else None
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
