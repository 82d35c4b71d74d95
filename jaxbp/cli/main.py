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
from ..scale import rollcall
from ..training.guard import STOPPING
from ..version import __version__

COMMANDS = {
    "check": ("jaxbp.cli.check", "prove every registered plugin and a suite of networks equal to jax.grad"),
    "train": ("jaxbp.cli.train", "train a network from a TOML config and --set overrides, or resume a run"),
    "predict": ("jaxbp.cli.predict", "class probabilities and labels for new inputs from a trained run folder"),
    "evaluate": ("jaxbp.cli.evaluate", "loss, accuracy and confusion matrix of a trained run on a labelled file"),
    "bench": ("jaxbp.cli.bench", "time the training step against jax.grad, PyTorch, numpy and the matmul roofline"),
    "plugins": ("jaxbp.cli.plugins", "list every registered plugin (activations, losses, layers, backward rules), "
                                     "its kind and where it came from"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxbp", description="Hand-written backpropagation in JAX, checked against jax.grad.")
    parser.add_argument("--version", action="version", version=f"jaxbp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        command = importlib.import_module(module)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv=None) -> int:
    """The command line; ``argv`` None (the program itself) also makes a late Ctrl-C quiet (see ``_quiet_exit``)."""
    own = argv is None and threading.current_thread() is threading.main_thread()
    if own:
        _watch_signals()
    code = 1
    try:
        code = _main(argv, own)
        return code
    except KeyboardInterrupt:  # a second Ctrl-C while the first was being reported
        print("jaxbp: interrupted", file=sys.stderr)
        code = 130
        return code
    finally:
        if own:
            signal.signal(signal.SIGINT, _quiet_exit)
        rollcall.leave(code)  # several processes: the others learn this one ends in order


STOP_GRACE_S = float(os.environ.get("JAXBP_STOP_GRACE_S", 5.0))  # how long a signal may wait for a busy main thread


def _watch_signals() -> None:
    """Ctrl-C and SIGTERM end the program within seconds, even while the main thread waits inside XLA (a long
    compile, a device transfer), where Python's handlers cannot run: the kernel's signal also goes to a pipe
    (``signal.set_wakeup_fd``) that a thread watches. When the main thread handles the signal within
    ``STOP_GRACE_S`` the usual path saves the finished epochs; when it does not, the watcher ends the process
    (exit 130 or 143): the checkpoint on disk keeps the epochs saved before, and a resume continues from it."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)

    def interrupt(signum, frame):
        STOPPING.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)

    def watch():
        while True:
            signals = [s for s in os.read(read, 64) if s in (signal.SIGINT, signal.SIGTERM)]
            if signals and not STOPPING.wait(STOP_GRACE_S):
                name = "terminated" if signals[0] == signal.SIGTERM else "interrupted"
                os.write(2, f"jaxbp: {name} while busy in a compile or device transfer ({STOP_GRACE_S:g} s without "
                            f"reaching a point to save); the checkpoint keeps the epochs saved before\n".encode())
                os._exit(143 if signals[0] == signal.SIGTERM else 130)

    threading.Thread(target=watch, name="jaxbp-signal-watch", daemon=True).start()


def _quiet_exit(signum, frame) -> None:
    """A Ctrl-C while the process already ends (JAX shutting down in atexit): exit 130 at once, quietly (the
    one line was printed), not a traceback from inside an exit hook. Everything was saved before."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(130)


def _main(argv, own: bool = False) -> int:
    try:
        args = build_parser().parse_args(argv)
        with np.errstate(all="ignore"):  # no raw numpy warnings: every result that matters is checked finite
            return args.run(args)
    except JaxbpError as error:
        print(f"jaxbp: error: {error}", file=sys.stderr)
        return error.exit_code  # 2; 3 when training diverged
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM (a cluster's notice): the finished epochs are saved
        if own:  # quiet from here on: a second Ctrl-C once the line is out (freeing the run takes a while) exits 130
            signal.signal(signal.SIGINT, _quiet_exit)
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
        if rollcall.joined():  # with several processes this is (nearly always) a peer lost in a collective:
            rollcall.lost_in_collective(error)  # the watch names it in one line and exits 2
        print(f"jaxbp: internal error: {type(error).__name__}: {error} (rerun with JAXBP_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
