"""jaxbp: backpropagation written by hand in JAX, proven equal to ``jax.grad``."""

from . import datasets as datasets
from .checking import CheckReport as CheckReport
from .checking import check_all as check_all
from .checking import check_model as check_model
from .checking import check_plugin as check_plugin
from .checking import plugin_names as plugin_names
from .errors import CheckpointError as CheckpointError
from .errors import ConfigError as ConfigError
from .errors import DataError as DataError
from .errors import DivergenceError as DivergenceError
from .errors import JaxbpError as JaxbpError
from .errors import MissingExtraError as MissingExtraError
from .errors import RunFolderError as RunFolderError
from .errors import ShapeError as ShapeError
from .errors import Terminated as Terminated
from .errors import UnknownPluginError as UnknownPluginError
from .inference import LoadedRun as LoadedRun
from .inference import load_run as load_run
from .networks import Model as Model
from .networks import mlp as mlp
from .networks import network as network
from .plugins import Activation as Activation
from .plugins import Layer as Layer
from .plugins import Loss as Loss
from .plugins import dense as dense
from .plugins import get_activation as get_activation
from .plugins import get_loss as get_loss
from .plugins import layer as layer
from .plugins import layer_norm as layer_norm
from .plugins import load_entry_points as load_entry_points
from .plugins import load_plugins as load_plugins
from .plugins import register_activation as register_activation
from .plugins import register_layer as register_layer
from .plugins import register_loss as register_loss
from .training import TrainResult as TrainResult
from .training import evaluate as evaluate
from .training import init_replicas as init_replicas
from .training import load_config as load_config
from .training import make_replica_step as make_replica_step
from .training import make_scan_step as make_scan_step
from .training import make_train_step as make_train_step
from .training import resume as resume
from .training import train as train
from .training import train_step_fn as train_step_fn

__version__ = "0.1.0"
