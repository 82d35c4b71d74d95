"""Options several commands share."""

from __future__ import annotations


def add_plugins(parser) -> None:
    parser.add_argument("--plugins", action="append", default=[], metavar="MODULE_OR_FILE.py",
                        help="import a module or .py file that registers plugins (activations, losses, layers, backward "
                             "rules) before running (repeatable); a run records it, so predict, evaluate and --resume "
                             "load it again; `jaxbp plugins` lists what is registered")


def add_run(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="a run folder made by `jaxbp train --out RUN`")
    parser.add_argument("--which", choices=("last", "best"), default="last",
                        help="the params to use: last (params.npz, default) or best (best.npz: the best epoch on the "
                             "validation split, kept when data.validation_fraction > 0)")
    parser.add_argument("--replica", type=int, metavar="R",
                        help="which replica of a run with several (learning-rate list or train.replicas > 1)")
    add_plugins(parser)
