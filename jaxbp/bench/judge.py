"""``jaxbp bench --judge results-SUITE.json``: a recorded run's speed targets judged again (the cpu and accelerator
suites), for results measured elsewhere (a GPU machine) or before the targets changed."""

from __future__ import annotations

import json
import pathlib

from . import accelerator as bench_accelerator
from . import report as bench_report
from . import targets as bench_targets
from ..errors import ConfigError
from .results import write

JUDGES = {"cpu": bench_targets.targets, "accelerator": bench_accelerator.targets}


def judge(args) -> int:
    """Judge the targets of a recorded ``results-<suite>.json`` again; print the markdown (and write it with --out)."""
    path = pathlib.Path(args.judge)
    try:
        results = json.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read {path} ({error.strerror}); give a results-<suite>.json that jaxbp bench wrote")
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not JSON ({error.msg} at line {error.lineno}); give a results-<suite>.json "
                          "that jaxbp bench wrote") from None
    suite = results.get("suite") if isinstance(results, dict) else None
    if suite not in JUDGES:
        raise ConfigError(f"{path} holds no cpu or accelerator bench results (suite: {suite!r}); give a "
                          "results-cpu.json or results-accelerator.json")
    try:
        results["targets"] = JUDGES[suite](results)
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{path} is missing a field the targets need ({type(error).__name__}: {error}); "
                          "give the results file as jaxbp bench wrote it") from None
    names = tuple(f"{t['target']}: " for t in results["targets"])
    results["notes"] = [note for note in results.get("notes", []) if not note.startswith(names)]  # old misses
    text = bench_report.markdown(results)
    if args.out:
        args.suite, args.quick = suite, results.get("quick", False)
        write(args, results, text)
    else:
        print(text)
    return 0
