"""Hyperparameter sweep on the validation slice: how every tuning choice was made.

    .venv/bin/python -m benchmarks.validation_sweep '{}' '{"temperature": 0.5}' ...

Each argument is a JSON object of ModelConfig overrides on top of `configs.MODEL`. For each,
the Trainer's own `train_module` trains on the latest ExampleGen and Transform outputs of a
pipeline run (default: the one `make bench` leaves in benchmarks/.pipeline_run), minus the
validation slice, and the Evaluator's metric code (the module's `evaluation` signature) scores
the slice. The served histories leave the slice out, so nothing of it is seen before scoring.
The eval split is never read. Prints a markdown table; appends the rows to
benchmarks/results/validation_sweep.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from components import evaluation_contract as contract
from components import features, stack
from components.trainer import train
from components.trainer.config import CUSTOM_CONFIG_KEY, ModelConfig
from pipeline import configs, metadata

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ("rmse", *(contract.top_k_accuracy_output(k) for k in (1, 10, 50, 100)),
           contract.top_k_accuracy_output(10, unrated=True))


def latest_inputs(pipeline_dir: str) -> tuple[str, str, str]:
    """The train and catalogue splits' file patterns and the transform graph of the latest
    pipeline run."""
    runs = metadata.latest_component_runs(os.path.join(pipeline_dir, "metadata.sqlite"))
    examples = runs["TfdsExampleGen"].outputs["examples"][0]
    return (metadata.split_files(examples, features.TRAIN_SPLIT),
            metadata.split_files(examples, features.MOVIES_SPLIT),
            runs["Transform"].outputs["transform_graph"][0].uri)


def validation_metrics(overrides: dict, train_pattern: str, catalogue_pattern: str,
                       transform_graph: str) -> dict:
    config = ModelConfig.from_custom_config(
        {CUSTOM_CONFIG_KEY: {**configs.MODEL.as_custom_config(), **overrides}})
    started = time.time()
    module = train.train_module([train_pattern], catalogue_pattern,
                                tft.TFTransformOutput(transform_graph), config,
                                serve_validation_ratings=False)
    seconds = time.time() - started
    records = np.concatenate(list(
        train.read_records([train_pattern]).batch(65_536).as_numpy_iterator()))
    validation = records[train.records_in_validation_slice(
        records, config.validation_fraction, config.validation_split)]
    sums = {}
    for start in range(0, len(validation), 1000):
        for name, values in module.evaluate(tf.constant(validation[start:start + 1000])).items():
            sums[name] = sums.get(name, 0.0) + float(tf.reduce_sum(values))
    metrics = {name: total / len(validation) for name, total in sums.items()}
    metrics["rmse"] = metrics.pop(contract.SQUARED_ERROR_OUTPUT) ** 0.5
    # The whole model, so that a row can be re-run after the defaults have moved on.
    return {"overrides": overrides, "config": config.as_custom_config(),
            "train_seconds": round(seconds),
            **{name: round(metrics[name], 4) for name in COLUMNS}}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="+", type=json.loads,
                        help="JSON objects of ModelConfig overrides, e.g. '{\"epochs\": 5}'")
    parser.add_argument("--pipeline-dir", default=str(ROOT / "benchmarks" / ".pipeline_run"))
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" /
                                                 "validation_sweep.json"))
    args = parser.parse_args(argv)
    stack.one_thread_per_op(configs.ONE_THREAD_PER_OP_MAX_CORES)  # trains as the Trainer does
    if not os.path.exists(os.path.join(args.pipeline_dir, "metadata.sqlite")):
        parser.error(f"No pipeline run in {args.pipeline_dir}: run `make bench RAW_DIR=...` "
                     "first, or pass --pipeline-dir.")
    train_pattern, catalogue_pattern, transform_graph = latest_inputs(args.pipeline_dir)
    rows = []
    for overrides in args.overrides:
        rows.append(validation_metrics(overrides, train_pattern, catalogue_pattern,
                                       transform_graph))
        print(json.dumps(rows[-1]), flush=True)
    previous = []
    if os.path.exists(args.results):
        with open(args.results) as handle:
            previous = json.load(handle)
    with open(args.results, "w") as handle:
        json.dump(previous + rows, handle, indent=1)
    print("\n| overrides | " + " | ".join(COLUMNS) + " | train s |")
    print("|" + " --- |" * (len(COLUMNS) + 2))
    for row in rows:
        print(f"| `{json.dumps(row['overrides'])}` | "
              + " | ".join(f"{row[c]:.4f}" for c in COLUMNS) + f" | {row['train_seconds']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
