"""Configs: defaults, TOML files, --set overrides with type checks, the TOML writer, and every error."""

import tomllib

import pytest

from jaxbp import ConfigError, load_config
from jaxbp.training.config import OPTIMIZERS, SCHEDULES, SCHEMA, parse_override, read_toml, to_toml


def test_defaults_are_the_issue_run():
    config = load_config()
    assert list(config) == ["data", "model", "optimizer", "train", "privacy"]
    assert config["privacy"]["enabled"] is False
    assert config["data"]["name"] == "spiral"
    assert config["model"] == {"hidden": [64, 64], "activation": "relu", "loss": "softmax_cross_entropy",
                               "rule": "backprop"}
    assert config["optimizer"]["name"] == "sgd" and config["optimizer"]["momentum"] == 0.0
    assert config["train"]["replicas"] == 1


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[optimizer]\nname = "adamw"\nlearning_rate = 0.01\n\n[train]\nepochs = 7\n')
    config = load_config(path, ["train.epochs=50", "optimizer.learning_rate=0.1", "optimizer.weight_decay=0.5",
                                "data.name=moons", "model.activation=[\"tanh\", \"relu\"]", "train.per_example=true"])
    assert config["train"]["epochs"] == 50 and config["optimizer"]["learning_rate"] == 0.1
    assert config["optimizer"]["weight_decay"] == 0.5 and config["optimizer"]["b1"] == 0.9  # adamw's arguments
    assert config["data"]["name"] == "moons" and config["model"]["activation"] == ["tanh", "relu"]
    assert config["train"]["per_example"] is True


@pytest.mark.parametrize("text,expected", [
    ("train.epochs=50", ("train", "epochs", 50)),
    ("optimizer.learning_rate=1e-3", ("optimizer", "learning_rate", 0.001)),
    ("data.name=moons", ("data", "name", "moons")),  # a bare word is a string
    ('data.name="my data.npz"', ("data", "name", "my data.npz")),
    ("model.hidden=[32, 32]", ("model", "hidden", [32, 32])),
    ("train.plots = false", ("train", "plots", False)),
])
def test_parse_override(text, expected):
    assert parse_override(text) == expected


def test_an_int_is_accepted_where_a_number_is_expected():
    assert load_config(None, ["optimizer.learning_rate=1"])["optimizer"]["learning_rate"] == 1.0


def test_toml_writer_round_trips(tmp_path):
    config = load_config(None, ["optimizer.name=adam", "optimizer.learning_rate=[0.1, 0.003]", 'data.name=odd "x".npz',
                                "optimizer.eps=1e-12", "data.noise=0.25"])
    text = to_toml(config)
    written = tomllib.loads(text)
    assert written == {section: {k: v for k, v in table.items() if v is not None} for section, table in config.items()}
    (tmp_path / "c.toml").write_text(text)
    assert load_config(tmp_path / "c.toml") == config


def test_every_optimizer_and_schedule_is_accepted_with_its_arguments():
    for name, (_, args) in OPTIMIZERS.items():
        for schedule, schedule_args in SCHEDULES.items():
            config = load_config({"optimizer": {"name": name, "schedule": schedule}})
            assert set(config["optimizer"]) == {"name", "learning_rate", "schedule", *args, *schedule_args}


@pytest.mark.parametrize("overrides,message", [
    (["train.epochs=ten"], "train.epochs must be an integer, e.g. 10; got 'ten' (str)"),
    (["train.epochs=2.5"], "train.epochs must be an integer"),
    (["train.plots=1"], "train.plots must be true or false"),
    (["model.hidden=64"], "model.hidden must be a list of integers"),
    (["model.hidden=[64, \"x\"]"], "model.hidden must be a list of integers"),
    (["model.activation=3"], "must be a string, e.g. \"relu\" or a list of strings"),
    (["optimizer.learning_rate=fast"], "optimizer.learning_rate must be a number"),
    (["train.epochs"], "bad --set 'train.epochs': use --set section.key=value"),
    (["epochs=3"], "use --set section.key=value"),
    (["a.b.c=3"], "use --set section.key=value"),
    (["trian.epochs=3"], "unknown config section(s) trian; known sections: data, model, optimizer, train, privacy"),
    (["train.epoch=3"], "unknown key(s) train.epoch; known keys of [train]: epochs, batch_size"),
    (["optimizer.name=lbfgs"], "unknown optimizer.name 'lbfgs'; known: sgd, adam, adamw, rmsprop"),
    (["optimizer.schedule=step"], "unknown optimizer.schedule 'step'; known: constant, linear, cosine"),
    (["optimizer.b1=0.5"], "unknown key(s) optimizer.b1; known keys of [optimizer]: name, learning_rate, schedule, "
                           "momentum, nesterov"),
    (["optimizer.warmup_steps=5"], "unknown key(s) optimizer.warmup_steps"),  # only with schedule = warmup_cosine
    (["data.name=imagenet"], "unknown data.name 'imagenet'; known datasets: blobs, xor, moons"),
    (["train.epochs=0"], "train.epochs must be >= 1; got 0"),
    (["train.replicas=0"], "train.replicas must be >= 1"),
    (["model.hidden=[64, 0]"], "model.hidden must list positive layer widths"),
    (["optimizer.learning_rate=-0.1"], "optimizer.learning_rate must be a number in (0, 1e+06]"),
    (["optimizer.learning_rate=[]"], "optimizer.learning_rate must be a number > 0 or a non-empty list"),
    (["optimizer.learning_rate=[0.1, 0.2]", "train.replicas=3"], "lists 2 rates, one replica each, but train.replicas"),
])
def test_config_errors_name_the_problem_and_the_fix(overrides, message):
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert message in str(error.value)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepochs = = 3\n")
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 2"):
        read_toml(bad)
    bad.write_text("train = 3\n")
    with pytest.raises(ConfigError, match=r"\[train\] must be a table"):
        load_config(bad)


def test_schema_kinds_are_all_describable():
    kinds = {kind for table in SCHEMA.values() for _, kind in table.values()}
    assert kinds <= {"int", "float", "bool", "str", "ints", "str|strs", "float|floats"}
