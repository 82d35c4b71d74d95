"""The 2-D convolution layer (NHWC): the notes' dense rule applied to every patch of the image.

Kernel layout ``w: (features, kh, kw, c_in)`` -- the notes' ``(d_out, d_in)`` with d_in unfolded as
(kh, kw, c_in): ``w.reshape(features, -1)`` is the dense weight acting on each flattened patch. With P
the (T, kh*kw*c_in) matrix of one example's T = H_out*W_out patches (im2col), the forward is the
notes' Z = P W^T + b, so the backward is the notes' rule once more:

    dJ/dW = sum_i dZ_i^T P_i        (the inputs correlated with dJ/dz: one convolution)
    dJ/db = sum over examples and positions of dZ
    dJ/dx = fold(dZ W)              (each patch's gradient added back where it was read: the
                                     transposed convolution, i.e. dZ dilated by the stride, convolved
                                     with the kernel flipped and its in/out channels swapped)

Both are computed by ``lax.conv_general_dilated`` (forward primitives, never autodiff); the
im2col form -- patches, then one matmul -- measured slower on XLA:CPU (the README's convnet section).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ..errors import ConfigError, ShapeError
from .activations import get_activation
from .layers import Layer, register_layer
from .sharding import contraction_sharding

NHWC = ("NHWC", "OHWI", "NHWC")  # x (n, H, W, c_in), w (c_out, kh, kw, c_in), z (n, H', W', c_out)


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__") or value < 1:
        raise ConfigError(f"conv2d {name} must be a positive int, got {value!r}")
    return int(value)


def _pads(size: int, k: int, stride: int, padding) -> tuple[int, int]:
    """(low, high) zero padding of one spatial axis: SAME keeps ceil(size / stride) outputs (TensorFlow's split)."""
    if padding == "VALID":
        return 0, 0
    if padding == "SAME":
        total = max((-(-size // stride) - 1) * stride + k - size, 0)
        return total // 2, total - total // 2
    return padding, padding


def _batched(x, rank: int = 3):
    """One example (H, W, C) as a batch of one; a batch as it is."""
    return x[None] if x.ndim == rank else x


def conv_dx(dz, w, x_shape, stride: int, pads) -> jax.Array:
    """dJ/dx: the transposed convolution -- dz dilated by the stride, padded, convolved with the flipped kernel."""
    k, (h, wd) = w.shape[1], x_shape[-3:-1]
    rest = [(size + lo + hi - k) % stride for size, (lo, hi) in zip((h, wd), pads)]  # rows the forward never read
    padding = [(k - 1 - lo, k - 1 - hi + r) for (lo, hi), r in zip(pads, rest)]
    return jax.lax.conv_general_dilated(dz, jnp.flip(w, (1, 2)), (1, 1), padding, lhs_dilation=(stride, stride),
                                        dimension_numbers=("NHWC", "IHWO", "NHWC"))


def conv_dw(dz, x, k: int, stride: int, pads) -> jax.Array:
    """dJ/dW[o, i, j, c] = sum_{n,p,q} dz[n, p, q, o] x_pad[n, p*s + i, q*s + j, c]: x correlated with dz over
    the batch, a convolution with the batch as the contracted axis (the notes' dZ^T X on all patches at once)."""
    rest = [(size + lo + hi - k) % stride for size, (lo, hi) in zip(x.shape[-3:-1], pads)]
    padding = [(lo, hi - r) for (lo, hi), r in zip(pads, rest)]
    sharded = contraction_sharding("nhwc", "npqo", "oijc", x, dz)  # a sharded batch: the sum is an all-reduce
    return jax.lax.conv_general_dilated(x, dz, (1, 1), padding, rhs_dilation=(stride, stride),
                                        dimension_numbers=("CHWN", "IHWO", "CHWN"), **sharded)


def patches(x, k: int, stride: int, pads) -> jax.Array:
    """im2col: (n, H, W, C) -> (n, T, k*k*C), each output position's patch in the kernel's (kh, kw, c_in) order."""
    p = jax.lax.conv_general_dilated_patches(x, (k, k), (stride, stride), list(pads),
                                             dimension_numbers=("NHWC", "OIHW", "NHWC"))  # features (c, kh, kw)
    n, ho, wo, _ = p.shape
    p = p.reshape(n, ho * wo, x.shape[-1], k * k)
    return jnp.swapaxes(p, -1, -2).reshape(n, ho * wo, -1)


def per_example_weight_sq(dz, x, k: int, stride: int, pads) -> jax.Array:
    """||dZ_i^T P_i||_F^2 per example, one column block of the unfolded input at a time: the kernel offset (a, b)'s
    block of P_i is x_i shifted by (a, b), so the (c_out, c_in) block of the gradient is one batched product. A
    loop over the k*k offsets keeps one shifted copy of x alive, never P or the (n, c_out, k*k*c_in) gradients."""
    xp = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    ho, wo = dz.shape[1:3]

    def offset(index, sq):
        a, b = index // k, index % k
        size = (xp.shape[0], (ho - 1) * stride + 1, (wo - 1) * stride + 1, xp.shape[3])
        rows = jax.lax.dynamic_slice(xp, (0, a, b, 0), size)
        block = jnp.einsum("nhwo,nhwc->noc", dz, rows[:, ::stride, ::stride])  # dZ_i^T (column block (a, b) of P_i)
        return sq + jnp.sum(block**2, axis=(1, 2))

    return jax.lax.fori_loop(0, k * k, offset, jnp.zeros(dz.shape[:1], dz.dtype), unroll=k)  # a kernel row a trip


def conv2d(features: int, kernel_size: int, stride: int = 1, padding: str | int = "SAME",
           activation: str = "identity") -> Layer:
    """a = act(z), z = conv(x, w) + b on NHWC images, w of shape (features, kernel_size, kernel_size, c_in).

    ``padding``: "SAME" (ceil(H / stride) outputs), "VALID" (no padding) or an int p (p zeros on each side).
    """
    features, k, stride = _positive("features", features), _positive("kernel_size", kernel_size), \
        _positive("stride", stride)
    if padding not in ("SAME", "VALID") and (isinstance(padding, bool) or not hasattr(padding, "__index__")
                                            or padding < 0):
        raise ConfigError(f"conv2d padding must be 'SAME', 'VALID' or an int >= 0, got {padding!r}")
    act = get_activation(activation)

    def geometry(shape):
        if len(shape) != 3:
            raise ShapeError(f"takes images (H, W, C) per example, got per-example shape {tuple(shape)}")
        pads = tuple(_pads(size, k, stride, padding) for size in shape[:2])
        out = tuple((size + lo + hi - k) // stride + 1 for size, (lo, hi) in zip(shape[:2], pads))
        if min(out) < 1:
            raise ShapeError(f"takes images of at least {k}x{k} after padding (its kernel), got per-example shape "
                             f"{tuple(shape)} with padding {padding!r}")
        return pads, out

    def init(key, shape):
        fan_in, fan_out = k * k * shape[-1], k * k * features
        out = geometry(shape)[1]
        std = math.sqrt(2.0 / fan_in) if act.init == "he" else math.sqrt(2.0 / (fan_in + fan_out))  # He / Glorot
        w = std * jax.random.normal(key, (features, k, k, shape[-1]))
        return (*out, features), {"w": w, "b": jnp.zeros((features,), w.dtype)}

    def forward(params, x):
        pads = geometry(x.shape[-3:])[0]
        z = jax.lax.conv_general_dilated(_batched(x), params["w"], (stride, stride), pads, dimension_numbers=NHWC)
        z = z.reshape(x.shape[:-3] + z.shape[1:]) + params["b"]  # z = w * x + b
        a = act.forward(z)
        return a, (x, z, a)

    def backward(params, cache, g):
        x, z, a = cache
        dz = act.backward(z, a, g)  # dJ/dz = dJ/da * da/dz
        pads, xb, dzb = geometry(x.shape[-3:])[0], _batched(x), _batched(dz)
        dw = conv_dw(dzb, xb, k, stride, pads)  # dJ/dW = sum_i dZ_i^T P_i
        db = jnp.sum(dzb, axis=(0, 1, 2))  # dJ/db = sum over examples and positions of dz
        dx = conv_dx(dzb, params["w"], xb.shape, stride, pads)  # dJ/dx = fold(dZ W): the transposed convolution
        return {"w": dw, "b": db}, dx.reshape(x.shape)

    def per_example_sq_norms(params, cache, g):
        x, z, a = cache
        dz = act.backward(z, a, g)
        pads, d = geometry(x.shape[-3:])[0], dz.reshape(dz.shape[0], -1, features)  # dZ_i (T, c_out)
        bias = jnp.sum(jnp.sum(d, axis=1) ** 2, axis=-1)  # ||sum_t dz_it||^2
        if d.shape[1] ** 2 < k * k * x.shape[-1] * features:  # ghost norm: ||dZ_i^T P_i||^2 = <P_i P_i^T, dZ_i dZ_i^T>
            p = patches(x, k, stride, pads)  # P_i (T, k*k*c_in): small when T is
            return jnp.einsum("nst,nst->n", p @ jnp.swapaxes(p, 1, 2), d @ jnp.swapaxes(d, 1, 2)) + bias
        return per_example_weight_sq(dz, x, k, stride, pads) + bias

    return Layer(init, forward, backward, per_example_sq_norms, shaped=True)


register_layer("conv2d", conv2d, example={"features": 3, "kernel_size": 3, "stride": 2, "activation": "tanh"},
               input_shape=(6, 5, 2))
