"""The Trainer's cost per training step at each MovieLens release's vocabulary sizes.

    .venv/bin/python -m benchmarks.step_cost [--shapes ml-100k ml-1m ml-25m] [--steps 40]
        [--precisions auto float32 bfloat16] [--user-chunk-sizes 4 8]

For each shape, 1 M heavy-tailed synthetic ratings (synthetic.generate_heavy_tailed, with the
shape's title count and as many users as 1 M ratings need) are spread over the shape's whole
user vocabulary, and the default model (`configs.MODEL`) is built at the full vocabulary sizes
(ml-25m: 162,541 users, 59,047 titles) and trained for `--steps` steps after as many warm-up
steps, in this process, on batches of user chunks as the Trainer makes them (a step's
examples: 1,024 less the chunks' padding, so each row also gives ms per 1,024 examples). What
it isolates: how a step's cost grows with the vocabularies, at the same history lengths and
batch. `--precisions` measures each `ModelConfig.history_sum_precision` in turn, and
`--user-chunk-sizes` each `ModelConfig.user_chunk_size` (the defaults: the configured ones).
Prints a Markdown table; writes benchmarks/results/step_cost.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from benchmarks import report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RATINGS = 1_000_000


def step_ms(shape_name: str, steps: int, precision: str, chunk_size: int) -> dict:
    import numpy as np

    from components import features
    from components.example_gen import synthetic
    from components.trainer import model as model_lib
    from components.trainer import train
    from components.trainer.histories import UserHistories
    from pipeline import configs

    shape = synthetic.SHAPES[shape_name]
    active_users = min(shape.num_users, round(RATINGS / shape.mean_per_user))
    data = synthetic.generate_heavy_tailed(dataclasses.replace(shape, num_users=active_users))
    user_of = np.random.default_rng(1).permutation(shape.num_users)[:active_users]
    columns = {features.USER_INDEX: user_of[data.users].astype(np.int64),
               features.MOVIE_INDEX: data.movies.astype(np.int64),
               features.TIMESTAMP: data.times.astype(np.int64),
               features.RATING_LABEL: data.stars.astype(np.float32)}
    histories = UserHistories.from_ratings(
        columns[features.USER_INDEX], columns[features.MOVIE_INDEX],
        columns[features.TIMESTAMP], columns[features.RATING_LABEL], shape.num_users)
    genres = np.zeros((shape.num_movies, features.NUM_GENRES), np.float32)
    genres[np.arange(shape.num_movies), np.arange(shape.num_movies) % features.NUM_GENRES] = 1
    config = dataclasses.replace(configs.MODEL, history_sum_precision=precision)
    model = model_lib.build_model(shape.num_users, shape.num_movies, config, genres,
                                  user_histories=histories)
    order = np.lexsort([columns[name] for name in (
        features.MOVIE_INDEX, features.TIMESTAMP, features.USER_INDEX)])
    columns = {name: values[order] for name, values in columns.items()}
    chunks = train.user_chunks(columns[features.USER_INDEX], columns[features.TIMESTAMP],
                               chunk_size)
    batch_chunks = train.chunks_per_batch(configs.MODEL.batch_size, chunk_size)
    batches = train.shuffled_chunk_batches(columns, chunks, batch_chunks, seed=0)
    model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)  # tracing and warm-up
    started = time.perf_counter()
    model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - started
    examples_per_step = batch_chunks * chunk_size * chunks.slots.mean()
    embedding_parameters = sum(int(np.prod(variable.shape)) for variable in model.variables
                               if "embedding" in variable.name)
    return {"shape": shape_name, "users": shape.num_users, "titles": shape.num_movies,
            "ratings": int(len(data.users)), "embedding_parameters": embedding_parameters,
            "history_sum_precision": precision,
            "history_sums_in_bfloat16": model.user_tower.history_sums_in_bfloat16,
            "user_chunk_size": chunk_size, "steps": steps,
            "ms_per_step": round(1000 * seconds / steps, 1),
            "ms_per_1024_examples": round(1000 * seconds / steps * 1024 / examples_per_step, 1)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["ml-100k", "ml-1m", "ml-25m"],
                        choices=["ml-100k", "ml-1m", "ml-25m"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--precisions", nargs="+", choices=["auto", "float32", "bfloat16"],
                        default=None, help="history_sum_precision values to measure "
                        "(default: the configured one)")
    parser.add_argument("--user-chunk-sizes", nargs="+", type=int, default=None,
                        help="user_chunk_size values to measure (default: the configured one)")
    parser.add_argument("--output", default=str(RESULTS / "step_cost.json"))
    args = parser.parse_args(argv)
    from components import stack
    from pipeline import configs

    stack.one_thread_per_op(configs.ONE_THREAD_PER_OP_MAX_CORES)  # as the local runner does
    provenance = {**report.provenance(), "machine": report.machine()}
    if args.precisions is None:
        args.precisions = [configs.MODEL.history_sum_precision]
    if args.user_chunk_sizes is None:
        args.user_chunk_sizes = [configs.MODEL.user_chunk_size]
    rows = [step_ms(shape, args.steps, precision, chunk_size)
            for shape in args.shapes for precision in args.precisions
            for chunk_size in args.user_chunk_sizes]
    lines = ["| shape | users | titles | embedding parameters | history sums | user chunk | "
             "ms per step | ms per 1,024 examples |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {row['shape']} | {row['users']:,} | {row['titles']:,} | "
              f"{row['embedding_parameters']:,} | {row['history_sum_precision']}: "
              f"{'bfloat16' if row['history_sums_in_bfloat16'] else 'float32'} | "
              f"{row['user_chunk_size']} | {row['ms_per_step']} | "
              f"{row['ms_per_1024_examples']} |" for row in rows]
    print("\n".join(lines))
    with open(args.output, "w") as handle:
        json.dump({**provenance, "measured": time.strftime("%Y-%m-%d %H:%M"), "rows": rows},
                  handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
