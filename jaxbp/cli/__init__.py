"""The ``jaxbp`` command line: one module per command, sharing one ``main``."""

from .main import main as main
