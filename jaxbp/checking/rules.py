"""The backward rules beside the proof: each rule's update against ``jax.grad``'s gradient, as an angle.

Backprop is proven leaf by leaf in ``models``; another rule is not meant to equal the gradient, so
``jaxbp check`` reports how far its update turns from it instead of a pass or fail.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..networks import mlp
from ..plugins.rules import layer_params
from .models import example_labels


class RuleAngle(NamedTuple):
    rule: str
    leaf: str  # e.g. "[1]['w']", one dense weight
    degrees: float  # angle between the rule's update and jax.grad's; 0 is backprop, 90 is orthogonal


def angle(a, b) -> float:
    """Degrees between two arrays seen as flat vectors (nan if either is zero)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    return math.nan if norms == 0 else math.degrees(math.acos(float(np.clip(a @ b / norms, -1.0, 1.0))))


def rule_angles(rule: str, *, sizes=(6, 8, 7, 5, 3), activation: str = "tanh", n: int = 16,
                seed: int = 0) -> tuple[RuleAngle, ...]:
    """For a backward rule, the angle of each dense weight's update to the true gradient (jax.grad), float64.

    Backprop's is 0 (``check_model`` proves it leaf by leaf); another rule's is reported, not judged.
    """
    with jax.enable_x64(True):
        model = mlp(list(sizes), activation, rule=rule)
        kp, ky = jax.random.split(jax.random.key(seed))
        params = model.init(kp)
        rng = np.random.default_rng(seed)
        x, y = jnp.asarray(rng.standard_normal((n, model.d_in))), example_labels(model, ky, n)
        grads, reference = jax.jit(lambda p: (layer_params(model.value_and_grad(p, x, y)[1]),
                                              layer_params(jax.grad(model.loss)(p, x, y))))(params)
        return tuple(RuleAngle(rule, f"[{i}]['w']", angle(g["w"], r["w"]))
                     for i, (g, r) in enumerate(zip(grads, reference)))


def format_angles(angles) -> str:
    lines = [f"{'rule':<26} {'leaf':<10} {'angle to jax.grad':>17}"]
    lines += [f"{a.rule:<26} {a.leaf:<10} {a.degrees:>15.2f} deg" for a in angles]
    return "\n".join(lines)
