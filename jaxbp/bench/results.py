"""A suite's results written where the user asked: the markdown table and the JSON it is made from."""

from __future__ import annotations

import json
import pathlib
import sys


def write(args, results: dict, text: str) -> None:
    """A suite's results as ``results-SUITE[-quick].md`` and ``.json`` under ``args.out``; the table printed too."""
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"results-{args.suite}" + ("-quick" if args.quick else "")
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(text)
    print(f"wrote {out / stem}.md and .json" + (f" in {results['elapsed_s']:.0f} s" if "elapsed_s" in results else ""),
          file=sys.stderr)


def command(args) -> str:
    """The ``jaxbp bench`` command line that made the results, for their record."""
    words = ["jaxbp bench", f"--suite {args.suite}"] + (["--quick"] if args.quick else [])
    words += [f"--{name.replace('_', '-')} {getattr(args, name)}"
              for name in ("configs", "batches", "parts", "rounds", "block_ms") if getattr(args, name)]
    return " ".join(words + (["--no-torch"] if args.no_torch else []))
