"""Configs: defaults, TOML files, --set overrides with type checks, the TOML writer, and every error, all at the door."""

import dataclasses
import tomllib

import pytest

import jaxbp
from jaxbp import ConfigError, RunConfig, load_config
from jaxbp.config import (OPTIMIZERS, SCHEDULES, SECTIONS, LayerSpec, ModelConfig, TrainConfig, as_table,
                          parse_override, print_config, read_toml, setting, to_toml)
from jaxbp.config import fields, load


def test_defaults_are_the_default_run():
    config = load_config()
    assert isinstance(config, RunConfig) and SECTIONS == ("data", "model", "optimizer", "train", "privacy")
    assert list(config.to_dict()) == list(SECTIONS)
    assert config.privacy.enabled is False
    assert config.data.name == "spiral"
    assert config.model == ModelConfig(hidden=(64, 64), activation="relu", loss="softmax_cross_entropy",
                                       rule="backprop", layers=())
    assert config.optimizer.name == "sgd" and config.optimizer.momentum == 0.0 and config.optimizer.b1 is None
    assert config.train.replicas == 1 and config == RunConfig()  # the dataclasses' defaults are the defaults
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.epochs = 3  # read once: nothing past the door changes it


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[optimizer]\nname = "adamw"\nlearning_rate = 0.01\n\n[train]\nepochs = 7\n')
    config = load_config(path, ["train.epochs=50", "optimizer.learning_rate=0.1", "optimizer.weight_decay=0.5",
                                "data.name=moons", "model.activation=[\"tanh\", \"relu\"]", "train.per_example=true"])
    assert config.train.epochs == 50 and config.optimizer.learning_rate == 0.1
    assert config.optimizer.weight_decay == 0.5 and config.optimizer.b1 == 0.9  # adamw's arguments
    assert config.data.name == "moons" and config.model.activation == ("tanh", "relu")
    assert config.train.per_example is True and config.model.activations == ("tanh", "relu")


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
    rate = load_config(None, ["optimizer.learning_rate=1"]).optimizer.learning_rate
    assert rate == 1.0 and isinstance(rate, float)


def test_toml_writer_round_trips(tmp_path):
    config = load_config(None, ["optimizer.name=adam", "optimizer.learning_rate=[0.1, 0.003]", 'data.name=odd "x".npz',
                                "optimizer.eps=1e-12", "data.noise=0.25"])
    text = to_toml(config)
    written = tomllib.loads(text)
    assert written == {section: {k: v for k, v in table.items() if v is not None}
                       for section, table in config.to_dict().items()}
    (tmp_path / "c.toml").write_text(text)
    assert load_config(tmp_path / "c.toml") == config
    assert load_config(config.to_dict()) == config == load_config(config)  # a dict, or the typed config itself


def test_every_optimizer_and_schedule_is_accepted_with_its_arguments():
    for name, (_, args) in OPTIMIZERS.items():
        for schedule, schedule_args in SCHEDULES.items():
            config = load_config({"optimizer": {"name": name, "schedule": schedule}})
            assert set(as_table(config.optimizer)) == {"name", "learning_rate", "schedule", *args, *schedule_args}
            assert config.optimizer.arguments == args  # each at its default


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


def test_every_key_has_a_type_the_errors_can_describe():
    for section in SECTIONS:
        for name, kind in fields.hints(type(getattr(RunConfig(), section))).items():
            assert fields.describe(kind), f"{section}.{name}"


def test_a_config_built_by_hand_passes_the_same_door():
    with pytest.raises(ConfigError, match="train.epochs must be >= 1; got 0"):
        load_config(RunConfig(train=TrainConfig(epochs=0)))
    with pytest.raises(ConfigError, match="train.epochs must be an integer"):
        load_config(RunConfig(train=TrainConfig(epochs="ten")))
    assert load_config(RunConfig(), ["train.epochs=3"]).train.epochs == 3


def test_print_config_shows_every_key_a_resolved_config_can_hold():
    printed = print_config(load_config(None, ["optimizer.name=adam"]))
    assert "epochs = 60" in printed and "b1 = 0.9" in printed and "momentum" not in printed  # adam's own arguments
    for key in ("n", "noise", "classes", "factor", "label_column", "noise_multiplier", "target_epsilon"):
        assert f"# {key} is unset: " in printed, key  # the ones the run fills in, said so
    keys = {line.lstrip("# ").split(" ")[0] for line in printed.splitlines() if " = " in line or " is unset" in line}
    def names(table):  # a nested table ([train.early_stopping]) shows its own keys
        return {n for f in dataclasses.fields(table) for n in (names(getattr(table, f.name))
                if dataclasses.is_dataclass(getattr(table, f.name)) else {f.name})}

    assert keys == {n for s in SECTIONS for n in names(getattr(RunConfig(), s))} - {
        "momentum", "nesterov", "decay", "weight_decay", "end_factor", "decay_rate", "warmup_steps", "decay_steps"}
    assert tomllib.loads(printed) == tomllib.loads(to_toml(load_config(None, ["optimizer.name=adam"])))


def test_model_layers_are_a_list_of_typed_layer_specs(tmp_path):
    config = load_config(None, ['model.layers=[{kind = "dense", features = 8, activation = "tanh"}, {kind = "layer_norm"}]'])
    assert config.model.layers == (LayerSpec("dense", (("features", 8), ("activation", "tanh"))), LayerSpec("layer_norm"))
    assert config.model.layers[0].kwargs == {"features": 8, "activation": "tanh"}
    text = to_toml(config)
    (tmp_path / "c.toml").write_text(text)
    assert load_config(tmp_path / "c.toml") == config
    for bad in ('model.layers=[{features = 8}]', "model.layers=[3]"):
        with pytest.raises(ConfigError, match=r"model.layers\[0\] must be a table with a kind"):
            load_config(None, [bad])
    with pytest.raises(ConfigError, match="model.layers must be a list of tables"):
        load_config(None, ['model.layers="dense"'])
    with pytest.raises(ConfigError, match="model.dropout and model.batch_norm add layers to the MLP"):  # no data loaded
        jaxbp.train(dataclasses.replace(config, model=dataclasses.replace(config.model, dropout=0.5)), progress=False)


@dataclasses.dataclass(frozen=True)
class _Stopping:
    patience: int = setting(5, fields.at_least(1))
    mode: str = setting("min", fields.one_of("min", "max"))


@dataclasses.dataclass(frozen=True)
class _Train:
    epochs: int = setting(60, fields.at_least(1))
    early_stopping: _Stopping = setting(_Stopping())
    stages: tuple[_Stopping, ...] = setting(())


@dataclasses.dataclass(frozen=True)
class _Run:
    train: _Train = setting(_Train())


def test_a_nested_table_and_a_list_of_tables_are_one_field_each(monkeypatch):
    """How early stopping ([train.early_stopping]) or a list of stages would be added: a dataclass as a field's type."""
    section = fields.read(_Train, {"early_stopping": {"patience": 3}, "stages": [{"mode": "max"}, {}]}, "train")
    assert section == _Train(60, _Stopping(3, "min"), (_Stopping(5, "max"), _Stopping()))
    assert fields.write(section) == {"epochs": 60, "early_stopping": {"patience": 3, "mode": "min"},
                                     "stages": [{"patience": 5, "mode": "max"}, {"patience": 5, "mode": "min"}]}
    for table, message in (({"early_stopping": {"patience": 0}}, "train.early_stopping.patience must be >= 1; got 0"),
                           ({"early_stopping": {"mode": "mx"}}, "unknown train.early_stopping.mode 'mx'; known: min, "
                                                                "max. Did you mean 'max'?"),
                           ({"early_stopping": {"patiense": 2}}, "unknown key(s) train.early_stopping.patiense; known "
                                                                 "keys of [train.early_stopping]: patience, mode. Did you "
                                                                 "mean 'patience'?"),
                           ({"stages": [{}, {"patience": "x"}]}, "train.stages[1].patience must be an integer"),
                           ({"early_stopping": 3}, "[train.early_stopping] must be a table of keys, got 3")):
        with pytest.raises(ConfigError) as error:
            fields.read(_Train, table, "train")
        assert message in str(error.value)
    monkeypatch.setattr(load, "RunConfig", _Run)  # --set reaches into a nested table by its dotted path
    assert parse_override("train.early_stopping.patience=7") == ("train", "early_stopping.patience", 7)
    with pytest.raises(ConfigError, match="use --set section.key=value"):
        parse_override("train.epochs.x=7")


def test_a_checkpoint_from_before_a_key_existed_resumes_while_the_key_is_at_its_default():
    """A key added later (here model.layers) is absent from old checkpoints' configs: same run at its default."""
    from jaxbp.training.guard import check_same_config, config_meta, fingerprint

    config = load_config(None, ["data.name=moons", "train.epochs=3"])
    old = config_meta(config)
    del old["config"]["model"]["layers"]
    old["config_sha256"] = fingerprint(old["config"])  # what the older jaxbp stored
    check_same_config(old, config, "runs/a")  # the fingerprints differ, the configs do not
    check_same_config(old, load_config(config, ["train.epochs=9"]), "runs/a")  # a resumable key may change
    layered = load_config(config, ['model.layers=[{kind = "dense", features = 3}]'])
    with pytest.raises(ConfigError, match=r"model.layers \(absent in the checkpoint, .*dense.* now\)"):
        check_same_config(old, layered, "runs/a")
    with pytest.raises(ConfigError, match=r'data.name \("moons" in the checkpoint, "spiral" now\)'):
        check_same_config(old, load_config(config, ["data.name=spiral"]), "runs/a")
