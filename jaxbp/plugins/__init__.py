"""The plugin kinds -- activations, losses, layers, backward rules -- each a registry of NamedTuples of pure functions."""

from .activations import ACTIVATIONS as ACTIVATIONS
from .activations import Activation as Activation
from .activations import get_activation as get_activation
from .activations import register_activation as register_activation
from .layers import LAYERS as LAYERS
from .layers import Layer as Layer
from .layers import LayerPlugin as LayerPlugin
from .layers import dense as dense
from .layers import layer as layer
from .layers import layer_norm as layer_norm
from .layers import register_layer as register_layer
from .losses import LOSSES as LOSSES
from .losses import Loss as Loss
from .losses import get_loss as get_loss
from .losses import register_loss as register_loss
from .registry import Registry as Registry
from .registry import load_entry_points as load_entry_points
from .user import load_plugins as load_plugins
from .rules import RULES as RULES
from .rules import FixedFeedback as FixedFeedback
from .rules import LearnedFeedback as LearnedFeedback
from .rules import Rule as Rule
from .rules import get_rule as get_rule
from .rules import layer_params as layer_params
from .rules import register_rule as register_rule
from .rules import trainable as trainable
