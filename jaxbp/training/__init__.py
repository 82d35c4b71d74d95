"""Training: optax steps over hand-written gradients, the epoch loop, and the run folder it writes."""

from ..config import RunConfig as RunConfig
from ..config import load_config as load_config
from .plots import plot_boundary as plot_boundary
from .epochs import epoch_batches as epoch_batches
from .runner import TrainResult as TrainResult
from .runner import resume as resume
from .runner import train as train
from .steps import evaluate as evaluate
from .steps import init_replicas as init_replicas
from .steps import make_replica_step as make_replica_step
from .steps import make_scan_step as make_scan_step
from .steps import make_train_step as make_train_step
from .steps import predicted_class as predicted_class
from .steps import train_step_fn as train_step_fn
