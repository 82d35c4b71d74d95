"""A run's config: one frozen dataclass per section, read and checked once at the door, then read as fields.

``load_config(source, overrides)`` takes the defaults, a TOML file, a dict or a ``RunConfig``, and
``--set`` overrides, and returns a ``RunConfig`` (``config.train.epochs``); nothing past it looks a
key up by string. ``load_saved(run_dir/config.toml)`` reads a run folder's config the same way, with
each key an older jaxbp did not write at the value that run trained with (``ADDED_LATER``).
``to_toml`` writes a config back; ``print_config`` shows every key, the unset ones too.

How to add a key (``sections.py``; the optimizer's in ``optimizer.py``): one line in its section's dataclass, with its default and checks::

    patience: int = setting(5, at_least(1))                    # train.patience; --set train.patience=3

The annotation sets the accepted type and the type error; the checks (``fields.py``: ``at_least``,
``above``, ``one_of``, ``in_range``, ``each_at_least``, or any ``(dotted_key, value) -> None``) say
the range; ``X | None = setting(None, help=...)`` is a key the run fills in.

Keys added later: value for old runs. A run folder's config.toml is written fully resolved, but one
saved before a key existed lacks it, and ``load_saved`` (resume, ``load_run``, predict, evaluate) then
reads the key's default. When that default is not what those runs did (a new key whose default changes
behaviour, or a key whose default changed after folders without it were saved), add the value old runs
trained with to ``load.py``'s table, and test it on a folder whose config.toml has the key deleted::

    ADDED_LATER = {"data.validation_fraction": 0.0}   # default 0.1 since; older runs held nothing out

A check across keys goes in the section's ``finish``; across sections, in ``RunConfig.finish``.

How to add a nested table, e.g. ``[train.early_stopping]``: a frozen dataclass of its keys and one
field of that type, ``early_stopping: EarlyStopping = setting(EarlyStopping())``; its keys are
``train.early_stopping.patience`` in errors and in ``--set``. A list of tables, e.g.
``[[model.layers]]``: ``layers: tuple[LayerSpec, ...] = setting(())``. A new section: a dataclass in
``sections.py`` and a field of ``RunConfig``. Plugin names (activation, loss, rule, a layer's kind)
are looked up when the run is built, after ``--plugins`` are imported.
"""

from .fields import setting as setting
from .fields import write as as_table
from .load import ADDED_LATER as ADDED_LATER
from .load import SECTIONS as SECTIONS
from .load import load_config as load_config
from .load import load_saved as load_saved
from .load import parse_override as parse_override
from .load import print_config as print_config
from .load import read_toml as read_toml
from .load import to_toml as to_toml
from .optimizer import OPTIMIZERS as OPTIMIZERS
from .optimizer import SCHEDULES as SCHEDULES
from .optimizer import OptimizerConfig as OptimizerConfig
from .sections import DataConfig as DataConfig
from .sections import LayerSpec as LayerSpec
from .sections import ModelConfig as ModelConfig
from .sections import PrivacyConfig as PrivacyConfig
from .sections import RunConfig as RunConfig
from .sections import TrainConfig as TrainConfig
