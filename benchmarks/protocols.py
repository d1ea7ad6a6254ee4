"""MovieLens 100k's canonical five-fold protocol (u1-u5): every model's figures per fold, their
mean and spread, beside published figures.

    make bench-protocols RAW_DIR=../shared/datasets/ml-100k \
        [PROTOCOLS_ARGS="--folds u1 u2 --peers EASE 'SVD (surprise)'"]

Each fold is one pipeline run (`--split canonical:uK`, its own pipeline root, so each
Evaluator's baseline is a model of the same fold) and the peers of benchmarks/quality.py
trained on that fold's base set. Tuning never sees a test set: the Trainer's validation slice is
carved from each fold's base set. Writes benchmarks/results/protocols.json and protocols.md, and
the README's Protocols table (quality.protocols_table).

Published figures are cited as published (not re-run here): RMSE on u1.base/u1.test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from benchmarks import quality, report
from components.example_gen import splits

PUBLISHED_U1_RMSE = {  # Papers with Code's MovieLens 100K table, u1 split
    "GLocal-K (Han et al., 2021)": "0.8889",
    "GC-MC (van den Berg et al., 2017)": "0.905 to 0.910",
}


def summarise(folds: dict[str, list[dict]]) -> list[dict]:
    """Per model: each column's mean and standard deviation over the folds that have it."""
    models = [row["model"] for row in next(iter(folds.values()))]
    summary = []
    for model in models:
        rows = [row for fold_rows in folds.values() for row in fold_rows if row["model"] == model]
        entry = {"model": model, "folds": len(rows)}
        for column in quality.COLUMNS:
            values = [row[column] for row in rows if column in row]
            if values:
                entry[column] = float(np.mean(values))
                entry[f"{column}_std"] = float(np.std(values))
        summary.append(entry)
    return summary


def markdown(summary: list[dict], fold_names: list[str], measured: str, commit: str) -> str:
    header = "| model | " + " | ".join(
        c.replace("_accuracy", "").replace("_unrated", " unrated").replace("_", "-")
        for c in quality.COLUMNS) + " |"
    lines = [f"Mean (standard deviation) over {', '.join(fold_names)}; measured {measured} at "
             f"{commit} by `make bench-protocols`.", "", header,
             "|" + " --- |" * (len(quality.COLUMNS) + 1)]
    for entry in summary:
        cells = [f"{entry[c]:.4f} ({entry[c + '_std']:.4f})" if c in entry else ""
                 for c in quality.COLUMNS]
        lines.append(f"| {entry['model']} | " + " | ".join(cells) + " |")
    lines += ["", "Published RMSE on u1 (cited, not re-run): " + "; ".join(
        f"{name} {value}" for name, value in PUBLISHED_U1_RMSE.items()) + "."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw-dir", required=True, help="GroupLens ml-100k files")
    parser.add_argument("--folds", nargs="+", default=list(splits.FOLDS),
                        choices=[*splits.FOLDS, *splits.ALL_BUT])
    parser.add_argument("--peers", nargs="*", default=None,
                        help="peer names to score (default: all of benchmarks/quality.py's)")
    parser.add_argument("--results-dir", default=quality.DEFAULT_RESULTS_DIR)
    args = parser.parse_args(argv)
    started = time.time()
    provenance = report.provenance()
    folds: dict[str, list[dict]] = {}
    sizes = {}
    for fold in args.folds:
        protocol = f"{splits.CANONICAL}:{fold}"
        print(f"Fold {fold}: running the pipeline ...", flush=True)
        run = quality.run_pipeline(args.raw_dir, quality.pipeline_root(protocol), protocol)
        data = quality.load_ratings(run["examples"])
        sizes[fold] = {"train_ratings": int(len(data.train_users)),
                       "eval_ratings": int(len(data.eval_users))}
        folds[fold] = quality.score_every_model(run, data, args.peers)
        print(quality.markdown(folds[fold]), flush=True)
    summary = summarise(folds)
    table = markdown(summary, args.folds, **provenance)
    os.makedirs(args.results_dir, exist_ok=True)
    with open(os.path.join(args.results_dir, "protocols.json"), "w") as handle:
        json.dump({"dataset": "movielens/100k-ratings", **provenance,
                   "folds": args.folds, "sizes": sizes,
                   "summary": summary, "per_fold": folds,
                   "published_u1_rmse": PUBLISHED_U1_RMSE,
                   "total_seconds": round(time.time() - started)}, handle, indent=2)
    with open(os.path.join(args.results_dir, "protocols.md"), "w") as handle:
        handle.write(f"# MovieLens 100k, canonical folds\n\n{table}\n")
    if args.results_dir == quality.DEFAULT_RESULTS_DIR:
        report.put_in_readme("protocols", quality.protocols_table(args.results_dir))
    print(f"\n{table}\n\nTotal {time.time() - started:.0f} s. Written to {args.results_dir}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
