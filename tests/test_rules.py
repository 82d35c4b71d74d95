"""Backward rules: each one's proof against backprop, its feedback state through steps, replicas and checkpoints.

Run ``python tests/test_rules.py --regenerate`` to rewrite tests/data/backprop_jaxpr.txt, only when a change to
backprop's own program is intended.
"""

import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbp
from jaxbp.checking import relative_error
from jaxbp.cli import main
from jaxbp.plugins.rules import RULES, FixedFeedback, LearnedFeedback
from jaxbp.checking import format_angles, rule_angles

GOLDEN = Path(__file__).parent / "data" / "backprop_jaxpr.txt"
ACTIVATIONS = ("tanh", "sigmoid", "softplus", "gelu", "identity")  # smooth: equalities hold to round-off


def random_architectures(count: int, seed: int = 0):
    """(sizes, activations, loss) of ``count`` random MLPs, 1 to 4 hidden layers."""
    rng = np.random.default_rng(seed)
    losses = ("softmax_cross_entropy", "mse", "binary_cross_entropy")
    for _ in range(count):
        loss = losses[rng.integers(len(losses))]
        hidden = [int(h) for h in rng.integers(2, 8, rng.integers(1, 5))]
        k = 1 if loss == "binary_cross_entropy" else int(rng.integers(2, 5))
        yield [int(rng.integers(2, 6)), *hidden, k], [ACTIVATIONS[i] for i in rng.integers(5, size=len(hidden))], loss


def batch(model, n: int = 7, seed: int = 1):
    """Inputs and labels drawn on the host (no per-shape compiles)."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((n, model.d_in)))
    if model.loss_name == "mse":
        return x, jnp.asarray(rng.standard_normal((n, model.d_out)))
    return x, jnp.asarray(rng.integers(0, max(model.d_out, 2), n))


def init(model, seed: int = 0):
    return jax.jit(model.init)(jax.random.key(seed))


def vg(model):
    """The model's value_and_grad, jitted: one compile instead of one per primitive."""
    return jax.jit(model.value_and_grad)


def worst(a, b) -> float:
    return max(relative_error(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def fa_with_b_equal_w(layers):
    """Feedback alignment's params with each B_l set to its W_l (the first layer sends nothing back: None)."""
    return FixedFeedback(layers, [None] + [p["w"] for p in layers[1:]])


@pytest.mark.parametrize("arch", list(random_architectures(3)), ids=lambda a: f"{a[0]}")
def test_feedback_alignment_with_b_equal_w_is_backprop(arch):
    sizes, acts, loss = arch
    bp, fa = jaxbp.mlp(sizes, acts, loss), jaxbp.mlp(sizes, acts, loss, rule="feedback_alignment")
    layers = init(bp, 3)
    x, y = batch(bp)
    truth = vg(bp)(layers, x, y)[1]
    assert worst(vg(fa)(fa_with_b_equal_w(layers), x, y)[1], truth) <= 1e-12
    # planted bug: one B a hair (1e-9 relative) away from its W is caught, unless the net has one layer
    params = fa_with_b_equal_w(layers)
    if len(sizes) > 2:
        params.feedback[-1] = params.feedback[-1] * (1 + 1e-9)
        assert worst(vg(fa)(params, x, y)[1], truth) > 1e-12


def test_sign_symmetry_on_weights_of_one_magnitude_is_backprop_up_to_the_scale():
    sizes, acts = [4, 6, 5, 3, 3], ["tanh", "sigmoid", "gelu"]  # layer l's weights are all +-c_l
    bp, ss = jaxbp.mlp(sizes, acts), jaxbp.mlp(sizes, acts, rule="sign_symmetry")
    scales = [0.7, 1.9, 0.4, 2.5]
    layers = [{**p, "w": c * jnp.sign(p["w"])} for c, p in zip(scales, init(bp, 1))]
    x, y = batch(bp)
    truth, got = vg(bp)(layers, x, y)[1], vg(ss)(layers, x, y)[1]
    assert all(jnp.linalg.norm(g["w"]) > 1e-3 for g in got)  # a real signal reaches every layer

    def error(above):  # backprop's dW_l is sign symmetry's times prod c_m over the layers m above l
        factors = [math.prod(scales[above(l):]) for l in range(len(layers))]
        return max(worst(jax.tree.map(lambda g: g * f, s), t) for s, t, f in zip(got, truth, factors))

    assert error(lambda l: l + 1) <= 1e-12
    assert error(lambda l: l) > 1e-3  # planted bug: the layer's own scale counted too


@pytest.mark.parametrize("hidden", [[6], [6, 5]])
def test_direct_feedback_alignment_with_b_equal_w_out_is_backprop_for_one_hidden_layer(hidden):
    sizes = [4, *hidden, 3]
    bp, dfa = jaxbp.mlp(sizes, "tanh"), jaxbp.mlp(sizes, "tanh", rule="direct_feedback_alignment")
    layers = init(bp, 2)
    rng = np.random.default_rng(0)
    feedback = [None] + [jnp.asarray(rng.standard_normal((3, p["w"].shape[1]))) for p in layers[1:]]
    feedback[-1] = layers[-1]["w"]  # stored (k, d) as W_out: the paper's B = W_out^T maps e up to the hidden layer
    x, y = batch(bp)
    error = worst(vg(dfa)(FixedFeedback(layers, feedback), x, y)[1], vg(bp)(layers, x, y)[1])
    if len(hidden) == 1:
        assert error <= 1e-12
    else:  # deeper, the first hidden layer gets B_1^T e straight from the output, not backprop's signal
        assert error > 1e-2


def test_kolen_pollack_from_b_equal_w_keeps_b_equal_w():
    optimizer = optax.adam(0.1)  # elementwise and stateful: equal gradients and equal states give equal updates
    kp = jaxbp.mlp([4, 6, 5, 3], "tanh", rule="kolen_pollack")
    params = init(kp, 0)
    assert isinstance(params, LearnedFeedback)
    params = params._replace(feedback=[None if b is None else params.layers[i]["w"]
                                       for i, b in enumerate(params.feedback)])
    step = jaxbp.make_train_step(kp, optimizer)
    new, _, _ = step(params, optimizer.init(params), *batch(kp))  # the optimizer sees B: the rule trains it
    for i, b in enumerate(new.feedback):
        if b is not None:
            np.testing.assert_array_equal(b, new.layers[i]["w"])  # bit for bit
            assert not np.array_equal(b, params.feedback[i])  # and B did move


def test_fixed_feedback_is_never_the_optimizers():
    fa, bp = jaxbp.mlp([4, 6, 5, 3], "tanh", rule="feedback_alignment"), jaxbp.mlp([4, 6, 5, 3], "tanh")
    params = init(fa, 0)
    np.testing.assert_array_equal(params.layers[1]["w"], init(bp, 0)[1]["w"])  # same W as backprop
    optimizer = optax.adamw(0.1, weight_decay=0.5)  # weight decay would move any parameter it saw
    opt_state = optimizer.init(jaxbp.trainable(params))
    assert len(jax.tree.leaves(opt_state)) == len(jax.tree.leaves(optimizer.init(init(bp, 0))))
    step = jaxbp.make_train_step(fa, optimizer)
    new = params
    for _ in range(3):
        new, opt_state, _ = step(new, opt_state, *batch(fa))
    for b, b0 in zip(new.feedback, params.feedback):
        assert (b is None) == (b0 is None) and (b is None or np.array_equal(b, b0))
    assert not np.array_equal(new.layers[1]["w"], params.layers[1]["w"])
    with pytest.raises(jaxbp.ConfigError, match=r"optimizer.init\(jaxbp.trainable\(params\)\)"):
        step(params, optimizer.init(params), *batch(fa))  # a state built over the feedback too
    with pytest.raises(jaxbp.ShapeError, match="make the params with model.init"):
        fa.value_and_grad(params.layers, *batch(fa))


@pytest.mark.parametrize("rule", RULES.names())
def test_per_example_form_equals_the_batched_form_and_float32_is_stable(rule):
    model = jaxbp.mlp([4, 6, 5, 3], ["tanh", "gelu"], rule=rule)
    params, (x, y) = init(model, 1), batch(model, n=9)
    both = jax.jit(lambda p: (model.value_and_grad(p, x, y)[1], model.per_example_grads(p, x, y)))  # one compile
    batched, per_example = both(params)
    per_example = jax.tree.map(lambda g: jnp.mean(g, axis=0), per_example)
    assert worst(per_example, batched) <= 1e-12
    single = vg(model)(jax.tree.map(lambda p: p.astype(jnp.float32), params), x.astype(jnp.float32), y)[1]
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(single))
    assert worst(single, batched) <= 1e-5


def test_a_users_rule_is_a_few_lines_and_weight_transport_through_it_is_backprop(restore_registries):
    jaxbp.register_rule("transport", send=lambda back, w, b, e: back(w))  # W^T dz, through the generic path
    sizes, acts, loss = [3, 5, 4, 2], ["gelu", "sigmoid"], "mse"
    bp, mine = jaxbp.mlp(sizes, acts, loss), jaxbp.mlp(sizes, acts, loss, rule="transport")
    params, (x, y) = init(bp, 0), batch(bp)
    assert mine.rule == "transport" and init(mine, 0) is not None
    assert worst(vg(mine)(params, x, y)[1], vg(bp)(params, x, y)[1]) <= 1e-12
    with pytest.raises(jaxbp.UnknownPluginError, match="known rules: backprop, direct_feedback_alignment"):
        jaxbp.mlp([2, 3], rule="no_such_rule")
    with pytest.raises(jaxbp.JaxbpError, match="already registered"):
        jaxbp.register_rule("transport", send=lambda back, w, b, e: back(w))


def backprop_programs() -> str:
    """The jaxprs of a small backprop model's value_and_grad and train steps (batched and per-example)."""
    model = jaxbp.mlp([3, 4, 2], "tanh")
    params = model.init(jax.random.key(0))
    x, y = jnp.zeros((5, 3)), jnp.zeros((5,), jnp.int32)
    optimizer = optax.sgd(0.1, momentum=0.9)
    opt_state = optimizer.init(params)
    texts = [str(jax.make_jaxpr(model.value_and_grad)(params, x, y))]
    for per_example in (False, True):
        step = jaxbp.train_step_fn(model, optimizer, per_example=per_example)
        texts.append(str(jax.make_jaxpr(step)(params, opt_state, x, y)))
    return f"# jax {jax.__version__}\n" + "\n\n".join(texts) + "\n"


def test_backprop_is_byte_for_byte_the_program_it_was_before_rules():
    golden = GOLDEN.read_text()
    if golden.splitlines()[0] != f"# jax {jax.__version__}":
        pytest.skip(f"{GOLDEN.name} was written with {golden.splitlines()[0][2:]}; jaxprs differ across JAX versions")
    assert backprop_programs() == golden, f"backprop's program changed; if intended, run python {__file__} --regenerate"
    # the proof can fail: the same model under a rule with the same arithmetic is another program
    model = jaxbp.mlp([3, 4, 2], "tanh", rule="sign_symmetry")
    other = str(jax.make_jaxpr(model.value_and_grad)(init(model, 0), jnp.zeros((5, 3)),
                                                     jnp.zeros((5,), jnp.int32)))
    assert other not in golden


def test_check_reports_angles_for_rules():
    assert all(a.degrees < 1e-5 for a in rule_angles("backprop"))
    fa = rule_angles("feedback_alignment")
    assert fa[-1].degrees < 1e-5 and all(1 < a.degrees < 179 for a in fa[:-1])  # the output layer is exact
    assert "feedback_alignment" in format_angles(fa)


def test_a_run_with_fixed_feedback_resumes_bit_identical_with_replicas(tmp_path):
    small = ["data.name=moons", "data.n=120", "model.hidden=[8, 6]", "model.rule=feedback_alignment",
             "optimizer.name=adam", "train.batch_size=24", "train.plots=false", "train.replicas=2"]
    straight = jaxbp.train(None, tmp_path / "a", overrides=small + ["train.epochs=3"], progress=False)
    jaxbp.train(None, tmp_path / "b", overrides=small + ["train.epochs=2"], progress=False)
    resumed = jaxbp.resume(tmp_path / "b", overrides=["train.epochs=3"], progress=False)
    for a, b in zip(jax.tree.leaves((straight.params, straight.opt_state)),
                    jax.tree.leaves((resumed.params, resumed.opt_state))):
        np.testing.assert_array_equal(a, b)
    params = straight.params
    assert isinstance(params, FixedFeedback) and params.feedback[0] is None
    assert not np.array_equal(params.feedback[1][0], params.feedback[1][1])  # each replica its own B
    model = jaxbp.mlp([2, 8, 6, 2], "relu", rule="feedback_alignment")
    initial = jax.vmap(model.init)(jax.vmap(jax.random.fold_in, (None, 0))(
        jax.random.split(jax.random.key(0))[0], jnp.arange(2)))
    never_trained = initial.feedback[2].astype(params.feedback[2].dtype)  # the run's precision: float32 by default
    np.testing.assert_array_equal(params.feedback[2], never_trained)
    loaded = jaxbp.load_run(tmp_path / "a", replica=1)  # the run folder rebuilds the model with its rule
    assert loaded.model.rule == "feedback_alignment"
    np.testing.assert_array_equal(loaded.params.feedback[1], params.feedback[1][1])
    with np.load(tmp_path / "b" / "checkpoint.npz") as stored:
        assert {"params.feedback.1", "params.feedback.2", "params.layers.0.w"} <= set(stored.files)
    with pytest.raises(jaxbp.UnknownPluginError, match="unknown rule 'nope'"):
        jaxbp.train(None, overrides=small + ["model.rule=nope", "train.epochs=1"], progress=False)


def test_check_of_the_rules_alone_reports_angles_and_judges_nothing(capsys):
    assert main(["check", "--kind", "rule"]) == 0
    out = capsys.readouterr().out
    assert "feedback_alignment" in out and " deg" in out and "backward rules measured, none judged" in out
    assert "0 leaves" not in out and "PASS" not in out  # no empty table passed off as a proof


if __name__ == "__main__" and sys.argv[1:] == ["--regenerate"]:
    jax.config.update("jax_enable_x64", True)
    GOLDEN.write_text(backprop_programs())
    print(f"wrote {GOLDEN}")

