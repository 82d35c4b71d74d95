"""``jaxbp train``: train from the built-in default, a TOML config and ``--set`` overrides, or resume a run."""

from __future__ import annotations

import os
import time

import jax

from ..scale import cluster as _cluster
from ..training import runner as _runner
from ..training.runlog import check_run_dir
from ..version import __version__
from ..config import load_config, load_saved, print_config
from ..errors import ConfigError
from .options import add_plugins


def add_arguments(parser) -> None:
    parser.add_argument("--config", metavar="FILE.toml",
                        help="TOML file with [data], [model], [optimizer], [train]; missing keys take the defaults "
                             "(default: spiral, 3 classes, 2-64-64-3 relu, SGD)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config key (repeatable), e.g. --set train.epochs=50")
    parser.add_argument("--out", metavar="DIR", help="run folder to create (default: runs/<date>-<time>-<dataset>)")
    parser.add_argument("--overwrite", action="store_true", help="replace the run files in an existing --out folder")
    parser.add_argument("--resume", metavar="DIR",
                        help="continue the run in DIR from its checkpoint up to train.epochs")
    parser.add_argument("--print-config", action="store_true",
                        help="print the config as TOML and exit without training")
    parser.add_argument("--quiet", action="store_true", help="no progress output, only the final summary")
    add_plugins(parser)
    hosts = parser.add_argument_group("several hosts (jax.distributed; with none of these, a SLURM job step or TPU pod "
                                      "is detected by itself)")
    hosts.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0, the same for every process")
    hosts.add_argument("--num-processes", type=int, metavar="P", help="how many processes take part")
    hosts.add_argument("--process-id", type=int, metavar="I", help="this process's index, 0..P-1 (0 writes the run folder)")
    hosts.add_argument("--timeout", type=float, default=300, metavar="SECONDS",
                       help="how long to wait for every process to arrive before giving up (default 300)")


def run(args) -> int:
    if args.resume and (args.config or args.out or args.overwrite):
        raise ConfigError("--resume DIR continues the run in DIR with its own config; drop --config/--out/--overwrite "
                          "(change the length with --set train.epochs=N)")
    if args.print_config:
        config = (load_saved(os.path.join(args.resume, "config.toml"), args.overrides) if args.resume
                  else load_config(args.config, args.overrides))
        print(print_config(config), end="")
        return 0
    config = (load_saved(os.path.join(check_run_dir(args.resume), "config.toml"), args.overrides) if args.resume
              else load_config(args.config, args.overrides))  # read once: a bad key is refused before anything starts
    if config.train.precision == "float64":
        jax.config.update("jax_enable_x64", True)  # for the whole process, before any array is made
    several = _cluster.start(config.train.devices, args.coordinator, args.num_processes, args.process_id, args.timeout,
                             identity={"config": config.to_dict(), "resume": bool(args.resume),
                                       "version": {"jaxbp": __version__}})
    if several and not (args.out or args.resume):
        raise ConfigError("with several processes, name the run folder: --out DIR (the same path for every process)")
    if args.resume:
        result = _runner.resume(args.resume, overrides=args.overrides, progress=not args.quiet, plugins=args.plugins)
    else:
        out = args.out or _default_out(config.data.name)
        result = _runner.train(config, out, overwrite=args.overwrite, progress=not args.quiet, plugins=args.plugins)
    if _cluster.is_writer():
        report(result.summary, result.run_dir)
    return 0


def _default_out(dataset: str) -> str:
    stem = os.path.join("runs", f"{time.strftime('%Y%m%d-%H%M%S')}-{os.path.splitext(os.path.basename(dataset))[0]}")
    out, number = stem, 1
    while os.path.exists(out):
        number += 1
        out = f"{stem}-{number}"
    return out


def _score(row: dict, split: str) -> str:
    """``acc 97.1%`` for a classifier, ``mse 0.0123 mae 0.0871 R2 0.9876`` for a regression."""
    if f"{split}_r2" in row:
        return f"mse {row[split + '_mse']:.4g} mae {row[split + '_mae']:.4g} R2 {row[split + '_r2']:.4f}"
    return f"acc {row[split + '_accuracy']:.1%}"


def report(summary: dict, run_dir) -> None:
    """The final numbers; with replicas, one row each and the spread across them."""
    for r in summary.get("per_replica", []):
        print(f"replica {r['replica']:>3}: lr {r['learning_rate']:<8g} seed +{r['seed_offset']:<3} "
              f"train-set loss {r['train_loss']:.4f} {_score(r, 'train')}  "
              f"test loss {r['test_loss']:.4f} {_score(r, 'test')}")
    for name, s in summary.get("spread", {}).items():
        shown = (lambda v: f"{v:.1%}") if name.endswith("accuracy") else (lambda v: f"{v:.4f}")
        print(f"spread {name:<14}: mean {shown(s['mean'])} std {shown(s['std'])} "
              f"min {shown(s['min'])} max {shown(s['max'])}")
    if "privacy" in summary:
        p = summary["privacy"]
        print(f"private: epsilon {p['epsilon']:.3f} at delta {p['delta']:g} ({p['accountant']} accountant), "
              f"noise multiplier {p['noise_multiplier']:.4g}, clip norm {p['clip_norm']:g}, {p['sampling']} sampling "
              f"q {p['q']:.4g}, {p['steps']} steps, {p['dropped_examples']} sampled example(s) over the batch "
              f"capacity dropped")
    mean = " (mean over replicas)" if summary["replicas"] > 1 else ""
    print(f"final{mean}: train-set loss {summary['train_loss']:.4f} {_score(summary, 'train')}, "
          f"test loss {summary['test_loss']:.4f} {_score(summary, 'test')}")
    resumed = summary.get("resumed_from_epoch", 0)
    took = (f"epochs {resumed + 1}..{summary['epochs']} in {summary['wall_time_s']:.1f} s (this invocation; "
            f"{summary['total_time_s']:.1f} s since epoch 1, as the progress line counts)" if resumed
            else f"in {summary['wall_time_s']:.1f} s")
    if "best_epoch" in summary:
        metric = next(key for key in summary if key.startswith("best_val_"))
        replica = f", replica {summary['best_replica']}" if "best_replica" in summary else ""
        print(f"best epoch {summary['best_epoch']} by {metric[5:]} {summary[metric]:.4f}{replica} on the "
              f"{summary['n_validation']}-example validation split: best.npz (--which best, "
              f"load_run(..., which=\"best\"))")
    print(f"{summary['epochs']} epochs, {summary['steps']} steps ({summary['dropped_per_epoch']} ragged examples "
          f"dropped per epoch), {took}, {summary['examples_per_second']:,.0f} examples/s timed "
          f"{summary['examples_per_second_timed']}" + (f"; run folder {run_dir}" if run_dir else ""))
