"""The ``jaxbp`` command line: ``jaxbp check``, ``jaxbp train``, ``jaxbp predict``, ``jaxbp evaluate``, ``jaxbp bench``.

Each subcommand lives in its own module with ``add_arguments(parser)`` and ``run(args) -> int``.
Errors are printed as one readable line (never a raw traceback); ``JAXBP_DEBUG=1`` shows it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading

import numpy as np

from ..errors import JaxbpError, Terminated
from ..boundary.files import describe_error

COMMANDS = {
    "check": ("jaxbp.cli.check", "prove every registered plugin and a suite of networks equal to jax.grad"),
    "train": ("jaxbp.cli.train", "train a network from a TOML config and --set overrides, or resume a run"),
    "predict": ("jaxbp.cli.predict", "class probabilities and labels for new inputs from a trained run folder"),
    "evaluate": ("jaxbp.cli.evaluate", "loss, accuracy and confusion matrix of a trained run on a labelled file"),
    "bench": ("jaxbp.cli.bench", "time the training step against jax.grad, PyTorch, numpy and the matmul roofline"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxbp", description="Hand-written backpropagation in JAX, checked against jax.grad.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        command = importlib.import_module(module)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv=None) -> int:
    """The command line; ``argv`` None (the program itself) also makes a late Ctrl-C quiet (see ``_quiet_exit``)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # a second Ctrl-C while the first was being reported
        print("jaxbp: interrupted", file=sys.stderr)
        return 130
    finally:
        if argv is None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, _quiet_exit)


def _quiet_exit(signum, frame) -> None:
    """A Ctrl-C while the process already ends (JAX shutting down in atexit): exit 130 at once, quietly (the
    one line was printed), not a traceback from inside an exit hook. Everything was saved before."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(130)


def _main(argv) -> int:
    try:
        args = build_parser().parse_args(argv)
        with np.errstate(all="ignore"):  # no raw numpy warnings: every result that matters is checked finite
            return args.run(args)
    except JaxbpError as error:
        print(f"jaxbp: error: {error}", file=sys.stderr)
        return error.exit_code  # 2; 3 when training diverged
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM (a cluster's notice): the finished epochs are saved
        terminated = isinstance(interrupt, Terminated)
        print(f"jaxbp: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    except BrokenPipeError:  # e.g. `jaxbp train | head`: the reader left; stay quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:  # a file the user named cannot be read or written: what was saved before stays
        print(f"jaxbp: error: {describe_error(error)}; files saved before are kept. Check the path, its permissions "
              f"and the free space", file=sys.stderr)
        return 2
    except Exception as error:  # the CLI never shows a raw traceback
        if os.environ.get("JAXBP_DEBUG"):
            raise
        print(f"jaxbp: internal error: {type(error).__name__}: {error} (rerun with JAXBP_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
