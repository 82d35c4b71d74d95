"""The ``jaxbp`` command line: ``jaxbp check``, ``jaxbp train``, ``jaxbp predict``, ``jaxbp evaluate``, ``jaxbp bench``.

Each subcommand lives in its own module with ``add_arguments(parser)`` and ``run(args) -> int``.
Errors are printed as one readable line (never a raw traceback); ``JAXBP_DEBUG=1`` shows it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import JaxbpError, Terminated

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
    try:
        args = build_parser().parse_args(argv)
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
    except Exception as error:  # the CLI never shows a raw traceback
        if os.environ.get("JAXBP_DEBUG"):
            raise
        print(f"jaxbp: internal error: {type(error).__name__}: {error} (rerun with JAXBP_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
