"""``jaxbp predict RUN --input FILE --out FILE``: class probabilities and labels for new raw inputs."""

from __future__ import annotations

import sys

import numpy as np

from ..inference.files import read_inputs, write_predictions, write_values
from ..inference.run import eval_mode, load_run
from .options import add_run


def add_arguments(parser) -> None:
    add_run(parser)
    parser.add_argument("--input", required=True, metavar="FILE",
                        help="raw inputs: .npz with array x (n, d), or .csv/.tsv with a header row naming the run's "
                             "feature columns (a label column, if present, is ignored)")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help=".csv/.tsv (label, then p_<class> per class) or .npz (probabilities, labels, classes); "
                             "- writes the CSV to standard output (the summary line then goes to standard error)")


def run(args) -> int:
    loaded = load_run(args.run_dir, args.replica, plugins=args.plugins, which=args.which)
    x, _ = read_inputs(args.input, loaded.record)
    if loaded.regression:  # values in the targets' own units
        values = np.asarray(loaded.predict(x))
        write_values(args.out, values, loaded.record.get("label_column") or "label", stdout=sys.stdout)
        print(f"predicted {len(values)} values of {args.input} with {args.run_dir} -> "
              f"{'standard output' if args.out == '-' else args.out} ({eval_mode(loaded.model)})",
              file=sys.stderr if args.out == "-" else sys.stdout)
        return 0
    probabilities = np.asarray(loaded.predict(x))
    labels = loaded.classify(x)
    write_predictions(args.out, probabilities, labels, loaded.classes, stdout=sys.stdout)
    counts = ", ".join(f"{c}: {int(np.sum(labels == c))}" for c in loaded.classes)
    print(f"predicted {len(labels)} rows of {args.input} with {args.run_dir} -> "
          f"{'standard output' if args.out == '-' else args.out} ({counts}; {eval_mode(loaded.model)})",
          file=sys.stderr if args.out == "-" else sys.stdout)
    return 0
