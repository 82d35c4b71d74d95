"""Tools for testing your own plugins and models: assertions, check variants and a pytest plugin."""

from ..checking import VARIANTS as VARIANTS
from .assertions import assert_backward_matches as assert_backward_matches
from .assertions import assert_model_correct as assert_model_correct
from .assertions import assert_no_retrace as assert_no_retrace
from .assertions import assert_plugin_correct as assert_plugin_correct
from .cases import PluginCase as PluginCase
from .cases import plugin_cases as plugin_cases
from .cases import plugin_tests as plugin_tests
