"""After training: load a run folder, repeat its data step on new inputs, predict, classify and evaluate."""

from .run import Evaluation as Evaluation
from .run import LoadedRun as LoadedRun
from .run import load_run as load_run
