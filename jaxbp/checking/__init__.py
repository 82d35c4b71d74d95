"""The proof: every hand-written backward equals ``jax.grad`` and float64 finite differences.

Each registered plugin (activation, loss, layer) is checked under ``jax.jit``, eagerly and under
``jax.vmap`` beside a loop over examples; whole networks are checked leaf by leaf, per-example
gradients against the batched ones; and each backward rule other than backprop is measured by
its angle to the true gradient. This package is the library's one caller of ``jax.grad``: here
it is the reference.
"""

from .compare import FD_BAND_KINK as FD_BAND_KINK
from .compare import FD_BAND_SMOOTH as FD_BAND_SMOOTH
from .compare import compare as compare
from .compare import relative_error as relative_error
from .models import check_all as check_all
from .models import check_model as check_model
from .models import example_labels as example_labels
from .models import network_suite as network_suite
from .plugins import CHECKS as CHECKS
from .plugins import KINDS as KINDS
from .plugins import check_plugin as check_plugin
from .plugins import plugin_names as plugin_names
from .plugins import variants as variants
from .report import GRAD_TOL as GRAD_TOL
from .report import PER_EXAMPLE_TOL as PER_EXAMPLE_TOL
from .report import CheckReport as CheckReport
from .report import CheckRow as CheckRow
from .report import merge as merge
from .rules import RuleAngle as RuleAngle
from .rules import format_angles as format_angles
from .rules import rule_angles as rule_angles
from .transforms import VARIANTS as VARIANTS
from .transforms import guarded as guarded
from .transforms import run_variant as run_variant
from .transforms import to_float64 as to_float64
