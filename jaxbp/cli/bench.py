"""``jaxbp bench``: the benchmark's command line (the suites themselves live in ``jaxbp.bench``)."""

from __future__ import annotations

import time

from ..bench.suite import PARTS, SUITES


def add_arguments(parser) -> None:
    parser.add_argument("--suite", choices=tuple(SUITES), default="cpu",
                        help="cpu (default): the toy, mnist and deep models at n=128/1024/8192 in float32; accelerator: wider "
                             "models, n up to 65536, float32 and bfloat16, on jax.devices(); privacy: DP-SGD's step against "
                             "the ordinary one, vmapped per-example clipping and Opacus; scale: 1, 2, 4 devices (host "
                             "devices on a CPU), strong and weak scaling, 16 replicas split over them; lenet: the "
                             "LeNet-style convnet's step against jax.grad's, its private step, and PyTorch's; modes: a "
                             "batch-norm MLP's step against jax.grad's, and a dropout MLP's against the dense one")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smallest batch only, shallower sweeps")
    parser.add_argument("--configs", help="comma-separated config names (default: all of the suite)")
    parser.add_argument("--batches", help="comma-separated batch sizes (default: the suite's)")
    parser.add_argument("--parts", help=f"comma-separated parts to run (default: all): {','.join(PARTS)}")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per measurement (default 11, quick 3)")
    parser.add_argument("--block-ms", type=float, help="length of one timed block of steps (default 100, quick 30)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out even where it is installed")
    parser.add_argument("--judge", metavar="RESULTS.json", help="judge the targets of a recorded results-cpu.json or "
                        "results-accelerator.json again (a run on another machine) instead of running; prints the "
                        "markdown, and writes it with --out")
    parser.add_argument("--out", help="folder for results-<suite>[-quick].md/.json (default: a new folder "
                                      "runs/bench-<date>-<time>; --out bench/ refreshes the committed results)")



def run(args) -> int:
    if args.suite == "scale" and not args.judge:  # host devices on a CPU must exist before JAX's backend starts
        from ..bench.scale import DEVICES
        from ..scale.cluster import start

        start(DEVICES)
    from ..bench import suite  # imports the contenders (and PyTorch where installed) only when benching

    if not args.judge:
        args.out = args.out or time.strftime("runs/bench-%Y%m%d-%H%M%S")
    return suite.run(args)
