"""Differentially private training: per-example clipping from the hand-written backward, noise, accounting."""

from .accounting import calibrate_sigma as calibrate_sigma
from .accounting import epsilon as epsilon
from .clipping import clipped_sum as clipped_sum
from .clipping import per_example_norms as per_example_norms
from .clipping import private_step_fn as private_step_fn
from .noise import DPConfig as DPConfig
from .noise import fold_noise as fold_noise
from .noise import private_optimizer as private_optimizer
from .sampling import capacity as capacity
from .sampling import poisson_batches as poisson_batches
