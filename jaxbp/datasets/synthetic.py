"""Synthetic 2-D classification sets. All randomness comes from ``jax.random`` keys; the
deterministic geometry is plain numpy float64 (no per-size XLA compile).

Each generator is ``fn(key, n, noise, **options) -> (x, y)``: ``x`` (n, 2) float64 and ``y``
(n,) int32, classes as equal in size as ``n`` allows, sorted by class (``load`` shuffles).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def bucket(n: int) -> int:
    """The power of two >= max(n, 64) at which random draws are made, so that one compiled
    sampler serves every n in the bucket; a draw for n is the first n entries."""
    return max(64, 1 << (n - 1).bit_length())


def normal(key: jax.Array, n: int, d: int) -> np.ndarray:
    """(n, d) standard normal draws from ``key`` (float32 draws, identical with or without x64)."""
    return np.asarray(jax.random.normal(key, (bucket(n), d), dtype=jnp.float32), np.float64)[:n]


def permutation(key: jax.Array, n: int) -> np.ndarray:
    """A uniform random permutation of 0..n-1: a permutation of 0..bucket(n)-1 with the entries
    >= n dropped (the order it induces on 0..n-1 is again uniform)."""
    order = np.asarray(jax.random.permutation(key, bucket(n)))
    return order[order < n]


def class_layout(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``y`` (n,) with class j holding ``n // k + (j >= k - n % k)`` points (the last
    classes take the remainder, as in sklearn's two-class sets), and each point's position
    ``t`` in [0, 1] along its class (0 first, 1 last; 0 for a class of one point)."""
    counts = [n // k + (j >= k - n % k) for j in range(k)]
    y = np.repeat(np.arange(k, dtype=np.int32), counts)
    t = np.concatenate([np.linspace(0.0, 1.0, c) for c in counts])
    return y, t


def blobs(key: jax.Array, n: int, noise: float, classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs: class j ~ N(c_j, noise^2 I), c_j = 3 (cos 2 pi j / k, sin 2 pi j / k).

    The centres are the vertices of a convex polygon, so the classes are linearly separable up
    to the Gaussian tails (for k = 2 each centre is 3 = 6 sigma from the midline at noise 0.5)."""
    y, _ = class_layout(n, classes)
    angle = 2.0 * math.pi * y / classes
    centres = 3.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return centres + noise * normal(key, n, 2), y


def xor(key: jax.Array, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Four clusters N(c, noise^2 I) at c in {(+-1, +-1)}; label 1 where c0 * c1 > 0 (quadrants
    I and III), 0 otherwise (II and IV). No line separates the classes."""
    quadrant, _ = class_layout(n, 4)
    centres = np.stack([np.where(quadrant % 2 == 0, 1.0, -1.0), np.where(quadrant < 2, 1.0, -1.0)], axis=1)
    y = (centres[:, 0] * centres[:, 1] > 0).astype(np.int32)
    return centres + noise * normal(key, n, 2), y


def moons(key: jax.Array, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """sklearn ``make_moons`` geometry: class 0 is (cos s, sin s), class 1 is
    (1 - cos s, 1/2 - sin s), s evenly spaced on [0, pi]; plus N(0, noise^2 I)."""
    y, t = class_layout(n, 2)
    s = math.pi * t
    upper = np.stack([np.cos(s), np.sin(s)], axis=1)
    lower = np.stack([1.0 - np.cos(s), 0.5 - np.sin(s)], axis=1)
    return np.where((y == 0)[:, None], upper, lower) + noise * normal(key, n, 2), y


def circles(key: jax.Array, n: int, noise: float, factor: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """sklearn ``make_circles`` geometry: class 0 on the unit circle, class 1 on the circle of
    radius ``factor``, each at angles 2 pi i / m, i = 0..m-1 (m its size); plus N(0, noise^2 I)."""
    y, _ = class_layout(n, 2)
    angle = np.concatenate([2.0 * math.pi * np.arange(m) / m for m in (n // 2, n - n // 2)])
    radius = np.where(y == 0, 1.0, factor)[:, None]
    return radius * np.stack([np.cos(angle), np.sin(angle)], axis=1) + noise * normal(key, n, 2), y


def spiral(key: jax.Array, n: int, noise: float, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """CS231n spiral: arm j has radius r evenly spaced on [0, 1] and angle
    theta = 4 j + 4 r + noise * N(0, 1); the point is (r sin theta, r cos theta)."""
    y, r = class_layout(n, classes)
    theta = 4.0 * y + 4.0 * r + noise * normal(key, n, 1)[:, 0]
    return np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1), y


# name -> (generator, default n, default noise, default options)
GENERATORS = {
    "blobs": (blobs, 400, 0.5, {"classes": 2}),
    "xor": (xor, 400, 0.25, {}),
    "moons": (moons, 400, 0.1, {}),
    "circles": (circles, 400, 0.08, {"factor": 0.5}),
    "spiral": (spiral, 1500, 0.2, {"classes": 3}),
}
