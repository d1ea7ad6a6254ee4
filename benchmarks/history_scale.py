"""The Trainer's history arrays at ml-25m scale: time and memory of each step, no pipeline.

    .venv/bin/python -m benchmarks.history_scale [--shape ml-25m]

Generates ratings shaped like the chosen MovieLens release (synthetic.generate_heavy_tailed),
then times what the Trainer does with them: the fit histories (sort by user and time), merging
the validation slice's, the rated catalogue rows the `unrated` outputs need, fitting the
neighbourhood rating model (components/trainer/neighbourhood.py), loading them into the user
tower's HistoryTable, and one training-sized read of the bounded windows. Prints a
Markdown table; writes benchmarks/results/history_scale.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="ml-25m", choices=["ml-100k", "ml-1m", "ml-25m"])
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from components.example_gen import synthetic
    from components.trainer import model as model_lib
    from components.trainer.histories import UserHistories
    from components.trainer.neighbourhood import ItemNeighbourhood
    from pipeline import configs

    steps: list[tuple[str, float, float]] = []

    def timed(name, function):
        started = time.perf_counter()
        value = function()
        steps.append((name, time.perf_counter() - started, peak_rss_gb()))
        return value

    shape = synthetic.SHAPES[args.shape]
    data = timed("generate ratings", lambda: synthetic.generate_heavy_tailed(shape))
    rng = np.random.default_rng(0)
    validation = rng.random(len(data.users)) < 0.1
    num_users = shape.num_users

    def histories(mask):
        return UserHistories.from_ratings(data.users[mask], data.movies[mask],
                                          data.times[mask], data.stars[mask], num_users)

    fit = timed("fit histories (sort by user, time)", lambda: histories(~validation))
    served = timed("merge the validation slice's", lambda: fit.merged(histories(validation)))
    row_of_movie = np.append(rng.permutation(shape.num_movies), -1)
    timed("rated catalogue rows", lambda: served.distinct_rows(row_of_movie))
    model = configs.MODEL
    titles = min(model.neighbourhood_max_titles, shape.num_movies)
    timed(f"neighbourhood model (similarities of {titles:,} titles)",
          lambda: ItemNeighbourhood.fit(fit, shape.num_movies, model.neighbourhood_size,
                                        model.neighbourhood_history_size,
                                        model.neighbourhood_shrinkage,
                                        model.neighbourhood_max_titles))
    table = timed("HistoryTable variables", lambda: model_lib.HistoryTable(served))
    batch = rng.integers(len(data.users), size=1024)
    users = tf.constant(data.users[batch], tf.int64)
    times = tf.constant(data.times[batch], tf.int64)

    def read_windows():
        for _ in range(10):
            table.earlier(users, times, 64)
            table.spread(users, 128)

    read_windows()  # warm-up
    timed("10 reads of a 1,024 batch's windows", read_windows)

    rows = [{"step": name, "seconds": round(seconds, 2), "peak_rss_gb": round(rss, 2)}
            for name, seconds, rss in steps]
    result = {"measured": time.strftime("%Y-%m-%d"), "shape": args.shape,
              "ratings": int(len(data.users)), "users": num_users, "rows": rows}
    lines = [f"{args.shape}-shaped: {len(data.users):,} ratings, {num_users:,} users.", "",
             "| step | seconds | peak RSS GB (process) |", "| --- | ---: | ---: |"]
    lines += [f"| {r['step']} | {r['seconds']} | {r['peak_rss_gb']} |" for r in rows]
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "history_scale.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
