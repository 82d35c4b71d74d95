"""The errors jaxbp raises. Each message names the problem and how to fix it."""


class JaxbpError(Exception):
    """Base class: every error jaxbp raises on bad input derives from it."""


class ShapeError(JaxbpError, ValueError):
    """An array has the wrong rank or shape; the message gives expected and actual."""


class DataError(JaxbpError, ValueError):
    """Data holds NaN/Inf, a label is out of range, or a dataset cannot be loaded."""


class UnknownPluginError(JaxbpError, LookupError):
    """A plugin name is not registered; the message lists the known names."""


class ConfigError(JaxbpError, ValueError):
    """A config file or `--set` override is malformed."""


class CheckpointError(JaxbpError, OSError):
    """A checkpoint or run folder is missing or corrupt."""


class MissingExtraError(JaxbpError, ImportError):
    """An optional package is not installed; the message names the extra."""
