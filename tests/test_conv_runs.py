"""Convnet runs from a config: [[model.layers]] tables, --set overrides, model.preset, images from mnist5k/digits,
then load_run, predict and evaluate on the run folder."""

import numpy as np
import pytest

import jaxbp

LAYERS = '[{kind="conv2d", features=3, kernel_size=3, activation="relu"}, {kind="max_pool2d", window=2}, {kind="flatten"}]'


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("convnet") / "run"
    result = jaxbp.train(None, out, overrides=["data.name=digits", "data.n=300", f"model.layers={LAYERS}",
                                               "train.epochs=1", "train.batch_size=30", "train.plots=false"],
                         progress=False)
    return out, result


def test_a_convnet_run_trains_on_digits_as_8x8_images(run):
    out, result = run
    loaded = jaxbp.load_run(out)
    assert loaded.model.input_shape == (8, 8, 1) and [layer.shaped for layer in loaded.model.layers[:1]] == [True]
    assert loaded.record["model"]["layers"][0] == {"kind": "conv2d", "features": 3, "kernel_size": 3,
                                                   "activation": "relu"}
    assert result.summary["test_accuracy"] > 0.1
    announced = (out / "train.log").read_text().splitlines()[0]  # each table's activation, not model.activation's
    assert "training 8x8x1 conv2d(relu),max_pool2d,flatten x 1 replica(s) on digits" in announced, announced


def test_load_run_predicts_and_evaluates_flat_rows_or_images(run):
    out, _ = run
    loaded = jaxbp.load_run(out)
    data = jaxbp.datasets.load("digits", key=__import__("jax").random.key(0), standardize=False)
    x, y = np.asarray(data.x_test[:12]), np.asarray(data.y_test[:12])
    flat, images = loaded.predict(x), loaded.predict(x.reshape(12, 8, 8, 1))
    np.testing.assert_allclose(flat, images, rtol=1e-6)
    assert flat.shape == (12, 10) and 0 <= loaded.evaluate(x, y).accuracy <= 1


@pytest.mark.parametrize("overrides,message", [
    (["model.preset=lenet5", "data.name=digits"],
     r"layer 2 \(conv2d\) takes images of at least 5x5 after padding \(its kernel\), got per-example shape \(4, 4, 6\)"),
    ([f"model.layers={LAYERS}", "data.name=spiral"],
     r"model layer 0 \(conv2d\) takes images, but data 'spiral' has flat rows of 2 features"),
    (["model.preset=lenet6"], r"unknown model.preset 'lenet6'; known: lenet5"),
])
def test_a_convnet_that_cannot_take_its_data_is_a_one_line_error(overrides, message, tmp_path):
    with pytest.raises(jaxbp.JaxbpError, match=message) as error:
        jaxbp.train(None, None, overrides=overrides + ["train.epochs=1", "train.plots=false"], progress=False)
    assert "\n" not in str(error.value)
