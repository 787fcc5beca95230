"""Side-by-side benchmark: ``python bench/run.py [--source postgres|mysql] [--scale full] [--tables ...]
[--methods ...] [--repeat 3] [--baseline DIR]``. On MariaDB the table is lineitem (2 M rows at full scale);
``--tables lineitem_uuid`` is the same rows keyed by a UUID (for ``rivet_keyset``).

``--baseline DIR`` (a checkout of another commit, with its native module built into
``DIR/python/rivet``) adds ``METHOD@base`` beside every rivet method, run alternately with it:
the comparison of two commits on the same tables.

Prints a markdown table (and writes JSON to bench/results/). Run nothing else on the
machine meanwhile: two measurements at once make both worthless.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

from bench.fixtures import SCALES, TABLES, ensure_mysql_lineitem, ensure_tables
from bench.harness import BASELINES, compare, render, to_json
from bench.methods import METHODS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", default="postgres", choices=["postgres", "mysql"])
    parser.add_argument("--scale", default="full", choices=sorted(SCALES))
    parser.add_argument("--tables", default=None)
    parser.add_argument("--methods", default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", default=None, help="a checkout to compare rivet methods with")
    args = parser.parse_args()
    scale = SCALES[args.scale]
    mysql = args.source == "mysql"
    default_methods = (
        "mysql_floor,rivet_chunked,rivet_chunked_cx,connectorx,duckdb_mysql"
        if mysql
        else "copy_devnull,rivet,connectorx,adbc,duckdb"
    )
    tables = tuple(t for t in (args.tables or ("lineitem" if mysql else ",".join(TABLES))).split(",") if t)
    methods = [m for m in (args.methods or default_methods).split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {sorted(METHODS)}")
    if args.baseline:
        BASELINES["base"] = args.baseline
        methods = [v for m in methods for v in ([m, f"{m}@base"] if m.startswith("rivet") else [m])]
    if mysql:
        ensure_mysql_lineitem(scale, tables)
    else:
        ensure_tables(scale, tables)
    url = scale.mysql_url if mysql else scale.url
    summaries = []
    for table in tables:
        summaries += compare(methods, url, table, args.repeat)
        print(render([s for s in summaries if s.table == table]), flush=True)
    print()
    print(render(summaries))
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = results / f"{args.scale}{'-mysql' if mysql else ''}-{stamp}.json"
    path.write_text(
        json.dumps(
            {
                "source": args.source,
                "scale": args.scale,
                "repeat": args.repeat,
                "machine": platform.platform(),
                "results": to_json(summaries),
            },
            indent=2,
        )
    )
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
