"""`python -m charts.generator [--check]`: write the chart's generated files, or exit 1 when any is stale."""

from __future__ import annotations

import argparse
import sys

from charts.generator.outputs import ROOT, generated, stale, write


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m charts.generator", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when a generated file is missing or differs")
    args = parser.parse_args()
    files = generated()
    if args.check:
        out = stale(files)
        for path in out:
            print(f"stale: {path.relative_to(ROOT)}", file=sys.stderr)
        if out:
            print("run `python -m charts.generator`", file=sys.stderr)
        return 1 if out else 0
    for path in write(files):
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
