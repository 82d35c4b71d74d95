"""The errors jaxbp raises. Each message names the problem and how to fix it."""

import difflib


class JaxbpError(Exception):
    """Base class: every error jaxbp raises on bad input derives from it."""

    exit_code = 2  # the command line's exit status for this error


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


class RunFolderError(JaxbpError, OSError):
    """A run folder is in use by another run, or cannot be written (the message names the path and the OS reason)."""


class DivergenceError(JaxbpError, ArithmeticError):
    """Training produced a non-finite loss or parameters; the last finite checkpoint is kept."""

    exit_code = 3


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: handled like Ctrl-C (the finished epochs are saved), exit status 143."""


def did_you_mean(word, options) -> str:
    """`` Did you mean 'relu'?`` (to end a message) when ``word`` is close to one of ``options``, else ``""``."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""
