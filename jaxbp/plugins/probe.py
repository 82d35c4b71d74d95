"""A plugin's fault named as the plugin's: each activation and loss is traced abstractly when a model is built.

``probe`` runs every forward and backward on ``jax.ShapeDtypeStruct`` s of the shapes the model
will give it (no arithmetic, no compile): a wrong output shape or dtype, or a function that cannot
be traced by ``jax.jit`` (Python ``if`` on an array, ``float(z)``, numpy calls), is a one-line
ConfigError naming the plugin, the function and the fix, before it could reach ``dot_general``.
``blame_backward`` is asked after a divergence: when the loss is finite but the hand-written
gradients are not, it names the layer whose backward made them, not the learning rate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..errors import ConfigError, ShapeError
from .activations import get_activation
from .losses import get_loss

_TRACING = "cannot be traced by jax.jit: use jnp.where / lax.cond instead of Python if, float() or numpy on arrays"


def _trace(kind: str, name: str, role: str, function, *args):
    try:
        return jax.eval_shape(function, *args)
    except (ShapeError, ConfigError):
        raise
    except jax.errors.JAXTypeError as error:
        raise ConfigError(f"{kind} plugin {name!r}: {role} {_TRACING} ({type(error).__name__})") from None
    except Exception as error:  # the plugin's own code failed: say whose it is
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise ConfigError(f"{kind} plugin {name!r}: {role} fails on inputs of shape "
                          f"{', '.join(str(tuple(a.shape)) for a in args)}: {type(error).__name__}: {first}") from None


def _same(kind: str, name: str, role: str, got, want: jax.ShapeDtypeStruct, what: str) -> None:
    if not hasattr(got, "shape") or tuple(got.shape) != tuple(want.shape):
        shown = tuple(got.shape) if hasattr(got, "shape") else type(got).__name__
        raise ShapeError(f"{kind} plugin {name!r}: {role} returns shape {shown} but must return {what} "
                         f"{tuple(want.shape)}; fix the plugin's {role}")


def probe(activations, widths, loss: str, out: int, batch: int = 2, dtype=jnp.float32) -> None:
    """Trace each ``activations[i]`` at width ``widths[i]`` and the ``loss`` at ``out`` outputs, abstractly."""
    for name, width in dict(zip(activations, widths)).items():
        act, z = get_activation(name), jax.ShapeDtypeStruct((batch, width), dtype)
        a = _trace("activation", name, "forward", act.forward, z)
        _same("activation", name, "forward", a, z, "z's shape")
        a = jax.ShapeDtypeStruct(z.shape, getattr(a, "dtype", dtype))
        g = _trace("activation", name, "backward", act.backward, z, a, z)
        _same("activation", name, "backward", g, z, "z's shape")
    plugin, z = get_loss(loss), jax.ShapeDtypeStruct((out,), dtype)
    value = _trace("loss", loss, "value", plugin.value, z, z)
    _same("loss", loss, "value", value, jax.ShapeDtypeStruct((), dtype), "a scalar per example, shape")
    _same("loss", loss, "backward", _trace("loss", loss, "backward", plugin.backward, z, z), z, "z's shape")


def blame_backward(model, params, x, y, activations, loss: str) -> str | None:
    """After a divergence: " ... " naming the backward that made NaN/Inf gradients from a finite loss, else None."""
    value, grads = jax.jit(model.value_and_grad)(params, x, y)
    if not bool(jnp.isfinite(value)):
        return None
    finite = [all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(g)) for g in grads]
    if all(finite):
        return None
    last = max(i for i, ok in enumerate(finite) if not ok)  # the first layer, going back, with bad gradients
    whose = (f"loss {loss!r}" if last >= len(activations) else f"activation {activations[last]!r} (layer {last})")
    return (f"the loss was finite ({float(value):.4g}) but the hand-written gradients were NaN/Inf from the backward "
            f"of {whose}: fix that plugin's backward (check it with jaxbp check); the learning rate is not the cause")
