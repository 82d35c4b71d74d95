"""The package's version, one place: ``jaxbp.__version__``, ``jaxbp --version`` and pyproject.toml agree (tested)."""

__version__ = "0.1.0"
