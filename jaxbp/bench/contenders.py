"""The contenders of ``jaxbp bench``, each one SGD step of the same MLP on the same batch.

- ``jaxbp``: ``make_train_step`` -- the hand-written backward, jitted, into ``optax.sgd``;
- ``jax.grad``: the same model's ``jax.value_and_grad(model.loss)`` into the same optimizer;
- ``torch``: ``nn.Linear``/``ReLU`` layers, autograd and ``torch.optim.SGD`` (CPU, optional);
- ``numpy``: a forward and backward written by hand in numpy, updating in place.

All start from the same weights (jaxbp's init), so one step of each gives the same update.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..networks import mlp
from ..training.steps import make_train_step
from .timing import THREADS, BenchModel, set_blas_threads

LEARNING_RATE = 1e-3


class Contender(NamedTuple):
    run: Callable[[int], None]  # k steps from the start state; returns when they are done
    prepare: Callable[[], None] | None  # untimed reset to the start state, or None
    params: Callable[[], list]  # the current weights as [{"w", "b"} numpy arrays]


def batch(sizes, n: int, seed: int = 0):
    """A fixed batch: x ~ N(0, 1) of shape (n, d_in) float32, integer labels y of shape (n,)."""
    rng = np.random.default_rng(seed)
    shape, classes = (tuple(sizes.input_shape), sizes.classes) if isinstance(sizes, BenchModel) else ((sizes[0],), sizes[-1])
    x = rng.standard_normal((n, *shape), dtype=np.float32)
    y = rng.integers(0, classes, size=n).astype(np.int32)
    return x, y


def start_params(sizes, dtype=jnp.float32, seed: int = 0):
    model = sizes.build() if isinstance(sizes, BenchModel) else mlp(list(sizes))
    params = jax.tree.map(lambda a: a.astype(dtype), model.init(jax.random.key(seed)))
    return model, params


def _to_numpy(params) -> list:
    return [{"w": np.asarray(p["w"], np.float32), "b": np.asarray(p["b"], np.float32)} for p in params]


def grad_step(model, optimizer):
    """The reference: ``jax.value_and_grad`` of the model's loss, the same optimizer, jitted alike."""

    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(model.loss)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(step)


def _jax_contender(step, params, optimizer, x, y) -> Contender:
    opt_state = optimizer.init(params)
    last = [params]

    def run(k):
        p, s = params, opt_state
        for _ in range(k):
            p, s, _ = step(p, s, x, y)
        last[0] = jax.block_until_ready(p)

    return Contender(run, None, lambda: _to_numpy(last[0]))


def jax_contenders(sizes, n: int, *, dtype=jnp.float32, lr: float = LEARNING_RATE) -> dict[str, Contender]:
    """``jaxbp`` (hand-written) and ``jax.grad`` steps of the same model from the same start."""
    model, params = start_params(sizes, dtype)
    x_np, y_np = batch(sizes, n)
    x, y = jnp.asarray(x_np, dtype), jnp.asarray(y_np)
    optimizer = optax.sgd(lr)
    return {
        "jaxbp": _jax_contender(make_train_step(model, optimizer), params, optimizer, x, y),
        "jax.grad": _jax_contender(grad_step(model, optimizer), params, optimizer, x, y),
    }


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_contender(sizes, n: int, *, device=None, threads: int = THREADS, bf16: bool = False, tf32: bool = False,
                    compiled: bool = False, lr: float = LEARNING_RATE) -> Contender:
    """PyTorch's SGD step (autograd, ``torch.optim.SGD``) from jaxbp's start, reset before each block: on the CPU
    (``device`` None) on ``threads`` threads, or on ``device``; eager or ``torch.compile``d, float32, TF32 or
    bfloat16 autocast."""
    import torch

    device = device or torch.device("cpu")
    start = _to_numpy(start_params(sizes)[1])
    x_np, y_np = batch(sizes, n)
    linears = [torch.nn.Linear(d_in, d_out) for d_in, d_out in zip(sizes[:-1], sizes[1:])]
    layers = []
    for i, linear in enumerate(linears):
        layers += [linear] if i == len(linears) - 1 else [linear, torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers).to(device)
    model = torch.compile(net) if compiled else net
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    x, y = torch.from_numpy(x_np).to(device), torch.from_numpy(y_np.astype(np.int64)).to(device)
    start_t = [(torch.from_numpy(p["w"].copy()).to(device), torch.from_numpy(p["b"].copy()).to(device)) for p in start]

    def prepare():
        if device.type == "cpu":
            torch.set_num_threads(threads)
        torch.backends.cuda.matmul.allow_tf32 = tf32  # global in PyTorch: set before each block
        torch.backends.cudnn.allow_tf32 = tf32
        with torch.no_grad():
            for linear, (w, b) in zip(linears, start_t):
                linear.weight.copy_(w)
                linear.bias.copy_(b)

    def run(k):
        for _ in range(k):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    def params():
        return [{"w": l.weight.detach().float().cpu().numpy().copy(), "b": l.bias.detach().float().cpu().numpy().copy()}
                for l in linears]

    prepare()
    return Contender(run, prepare, params)


def numpy_contender(sizes, n: int, *, lr: float = LEARNING_RATE, threads: int = THREADS) -> Contender:
    """A plain numpy step written by hand (relu MLP, softmax cross-entropy, SGD in place), BLAS on ``threads``."""
    start = _to_numpy(start_params(sizes)[1])
    x, y = batch(sizes, n)
    onehot = np.eye(sizes[-1], dtype=np.float32)[y]
    ws = [p["w"].copy() for p in start]
    bs = [p["b"].copy() for p in start]
    last = len(ws) - 1

    def prepare():
        set_blas_threads(threads)
        for w, b, p in zip(ws, bs, start):
            np.copyto(w, p["w"])
            np.copyto(b, p["b"])

    def step():
        acts, zs, a = [x], [], x
        for i, (w, b) in enumerate(zip(ws, bs)):
            z = a @ w.T
            z += b  # z = a w^T + b
            if i < last:
                zs.append(z)
                a = np.maximum(z, 0)  # relu
                acts.append(a)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)  # softmax probabilities
        loss = -np.mean(np.log(z[np.arange(n), y]))
        dz = z
        dz -= onehot
        dz *= 1.0 / n  # dJ/dz = (A - Y) / n
        for i in range(last, -1, -1):
            dw = dz.T @ acts[i]
            db = dz.sum(axis=0)
            if i > 0:
                dz = dz @ ws[i]  # dJ/da of the layer below, before w changes
                dz *= zs[i - 1] > 0  # relu'
            ws[i] -= lr * dw
            bs[i] -= lr * db
        return loss

    def run(k):
        for _ in range(k):
            step()

    return Contender(run, prepare, lambda: [{"w": w.copy(), "b": b.copy()} for w, b in zip(ws, bs)])


def all_contenders(sizes, n: int, *, dtype=jnp.float32, torch: bool = True, numpy: bool = True,
                   one_thread: bool = True) -> dict[str, Contender]:
    """Every contender for one config and batch size, in timing order.

    ``torch`` and ``numpy`` run on THREADS threads; with ``one_thread`` also on one ("torch-1t",
    "numpy-1t"): an OpenMP/BLAS pool of two stalls when another process holds a core, and the
    targets are judged against the faster of the two.
    """
    contenders = jax_contenders(sizes, n, dtype=dtype)
    if isinstance(sizes, BenchModel):  # the PyTorch and numpy steps are MLPs
        return contenders
    if torch and torch_available():
        contenders["torch"] = torch_contender(sizes, n)
        if one_thread:
            contenders["torch-1t"] = torch_contender(sizes, n, threads=1)
    if numpy:
        contenders["numpy"] = numpy_contender(sizes, n)
        if one_thread:
            contenders["numpy-1t"] = numpy_contender(sizes, n, threads=1)
    return contenders
