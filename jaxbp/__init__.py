"""jaxbp: backpropagation written by hand in JAX, proven equal to ``jax.grad``."""

from . import datasets as datasets
from ._activations import Activation as Activation
from ._activations import get_activation as get_activation
from ._activations import register_activation as register_activation
from ._config import load_config as load_config
from ._errors import CheckpointError as CheckpointError
from ._errors import ConfigError as ConfigError
from ._errors import DataError as DataError
from ._errors import JaxbpError as JaxbpError
from ._errors import MissingExtraError as MissingExtraError
from ._errors import ShapeError as ShapeError
from ._errors import UnknownPluginError as UnknownPluginError
from ._layers import Layer as Layer
from ._layers import dense as dense
from ._layers import layer as layer
from ._layers import layer_norm as layer_norm
from ._layers import register_layer as register_layer
from ._losses import Loss as Loss
from ._losses import get_loss as get_loss
from ._losses import register_loss as register_loss
from ._network import Model as Model
from ._network import mlp as mlp
from ._network import network as network
from ._registry import load_entry_points as load_entry_points
from ._runner import TrainResult as TrainResult
from ._runner import resume as resume
from ._runner import train as train
from ._train import evaluate as evaluate
from ._train import init_replicas as init_replicas
from ._train import make_replica_step as make_replica_step
from ._train import make_scan_step as make_scan_step
from ._train import make_train_step as make_train_step
from ._train import train_step_fn as train_step_fn
from .checking import CheckReport as CheckReport
from .checking import check_all as check_all
from .checking import check_model as check_model
from .checking import check_plugin as check_plugin
from .checking import plugin_names as plugin_names

__version__ = "0.1.0"
