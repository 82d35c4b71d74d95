"""``jaxbp evaluate RUN --data FILE``: loss, accuracy and confusion matrix on labelled data; confusion.png."""

from __future__ import annotations

import os

from ..boundary.files import describe_error
from ..errors import JaxbpError
from ..inference.files import read_inputs
from ..inference.run import eval_mode, load_run
from ..training.plots import save_confusion
from ..training.runlog import confusion_file
from .options import add_run


def add_arguments(parser) -> None:
    add_run(parser)
    parser.add_argument("--data", required=True, metavar="FILE",
                        help="labelled raw data: .npz with x (n, d) and y (n,), or .csv/.tsv with the run's feature "
                             "columns and its label column; labels as in the training file")


def run(args) -> int:
    loaded = load_run(args.run_dir, args.replica, plugins=args.plugins, which=args.which)
    x, labels, lines = read_inputs(args.data, loaded.record, need_labels=True, with_lines=True)
    if loaded.regression:
        return _regression(args, loaded, x, labels)
    try:
        result = loaded.evaluate(x, labels, where=args.data, lines=lines)
    except JaxbpError as error:  # every error names the file, as training's do
        raise type(error)(error if str(error).startswith(args.data) else f"{args.data}: {error}") from None
    print(f"{args.data}: {result.n} examples, loss {result.loss:.4f}, accuracy {result.accuracy:.2%} "
          f"({eval_mode(loaded.model)})")
    print(confusion_text(result.confusion, result.classes))
    name = confusion_file(loaded.record["replicas"], loaded.replica)
    title = f"{os.path.basename(args.data)}: accuracy {result.accuracy:.1%}"
    try:
        written = save_confusion(os.path.join(args.run_dir, name), result.confusion, result.classes, title, print)
    except OSError as error:  # a read-only run folder: the numbers above stand, the figure is skipped
        print(f"confusion plot not saved ({describe_error(error)}); the results above are complete")
        return 0
    if written:
        print(f"wrote {os.path.join(args.run_dir, written)}")
    return 0


def confusion_text(confusion, classes) -> str:
    """Rows: true label; columns: predicted label."""
    names, corner = [str(c) for c in classes], "true \\ predicted"
    first = max(len(corner), *(len(n) for n in names))
    width = max(*(len(n) for n in names), len(str(confusion.max()))) + 2
    lines = [corner.ljust(first) + "".join(n.rjust(width) for n in names)]
    lines += [name.ljust(first) + "".join(str(v).rjust(width) for v in row) for name, row in zip(names, confusion)]
    return "\n".join(lines)


def _regression(args, loaded, x, targets) -> int:
    """R^2, MSE and MAE in the targets' units, and predicted_vs_true.png (a point per row, the line y = x)."""
    try:
        result = loaded.evaluate_values(x, targets)
    except JaxbpError as error:
        raise type(error)(error if str(error).startswith(args.data) else f"{args.data}: {error}") from None
    print(f"{args.data}: {result['n']} examples, R2 {result['r2']:.4f}, mse {result['mse']:.4g}, "
          f"mae {result['mae']:.4g} ({eval_mode(loaded.model)})")
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return 0
    figure = Figure(figsize=(5, 5), layout="constrained")
    axes = figure.add_subplot()
    true, predicted = result["true"].ravel(), result["predicted"].ravel()
    axes.scatter(true, predicted, s=8, alpha=0.6)
    ends = [min(true.min(), predicted.min()), max(true.max(), predicted.max())]
    axes.plot(ends, ends, "k--", lw=1)
    axes.set(xlabel="true", ylabel="predicted", title=f"{os.path.basename(args.data)}: R2 {result['r2']:.3f}")
    path = os.path.join(args.run_dir, "predicted_vs_true.png")
    try:
        figure.savefig(path, dpi=100)
    except OSError as error:
        print(f"plot not saved ({describe_error(error)}); the results above are complete")
        return 0
    print(f"wrote {path}")
    return 0
