"""Turns benchmark JSON (pytest-benchmark's --benchmark-json, or `loggrad bench --json`) into
the markdown ratio table (how many times faster loggrad is than each engine) and a plot.

    python benchmarks/ratios.py bench.json [--plot ratios.png] [--markdown ratios.md]
"""

import argparse
import json
import sys

from loggrad.bench import plot_ratios, ratio_table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("json", help="benchmark JSON file")
    p.add_argument("--plot", metavar="FILE", help="write the ratio plot (matplotlib)")
    p.add_argument("--markdown", metavar="FILE", help="also write the table to FILE")
    args = p.parse_args(argv)
    try:
        with open(args.json) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        print(f"ratios.py: cannot read {args.json}: {e}", file=sys.stderr)
        return 2
    table = ratio_table(data)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")
    if args.plot:
        plot_ratios(data, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
