"""Model quality: this pipeline's model against the TFRS tutorial and classic peers, side by side.

    make bench RAW_DIR=../shared/datasets/ml-100k [PROTOCOL=time|canonical:u1|...]

Runs the pipeline (LocalDagRunner, default settings; cached components are reused) on the raw
GroupLens files, reads the train/eval split its ExampleGen wrote, trains every peer on that same
train split, and scores every model with the same metric code (benchmarks/ranking.py) over the
whole catalogue. Writes benchmarks/results/quality.json and quality.md (quality-<protocol>.* for
another protocol), and the README's tables (its quality table from a random split's run, its
Protocols table from every protocol's latest results), and prints the table.
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
from ml_metadata.proto import metadata_store_pb2

import local_runner
from benchmarks import peers, report, seed_tutorial
from benchmarks.ranking import KS, Ratings, per_user, rmse, top_k_accuracy
from components import evaluation_contract as contract
from components import features, stack
from components.trainer import catalogue
from components.trainer import config as config_lib
from pipeline import configs, metadata, runner_args

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS_DIR = str(ROOT / "benchmarks" / "results")
COLUMNS = [contract.top_k_accuracy_output(k) for k in KS] + [
    contract.top_k_accuracy_output(10, unrated=True),
    contract.top_k_accuracy_output(100, unrated=True), "rmse"]


def pipeline_root(protocol: str) -> str:
    """One pipeline root per protocol: each Evaluator's baseline is a model of its own split."""
    suffix = "" if protocol == "random" else "-" + protocol.replace(":", "-")
    return str(ROOT / "benchmarks" / f".pipeline_run{suffix}")


def run_pipeline(raw_dir: str, output_dir: str, protocol: str = configs.SPLIT_PROTOCOL) -> dict:
    """Runs the pipeline; returns its Evaluator metrics, Examples artifact and pushed model
    path."""
    started = time.time()
    status = local_runner.main(["--raw-dir", raw_dir, "--output-dir", output_dir,
                                "--split", protocol])
    if status == local_runner.NOT_BLESSED:
        raise RuntimeError("The pipeline's model was not blessed, so nothing was pushed.")
    if status != local_runner.PUSHED:
        raise RuntimeError(f"The pipeline failed (exit status {status}); see its output above.")
    metadata_path = os.path.join(output_dir, "metadata.sqlite")
    runs = metadata.latest_component_runs(metadata_path)
    evaluation = metadata.evaluation_metrics(runs["Evaluator"].outputs["evaluation"][0].uri)
    pushed = runs["Pusher"].outputs["pushed_model"][0].custom_properties
    # The run that trained the model: this run's Trainer took no time when it came from the cache.
    training = metadata.producing_execution(metadata.open_store(metadata_path),
                                            runs["Trainer"].outputs["model"][0].id)
    return {"metrics": evaluation, "examples": runs["TfdsExampleGen"].outputs["examples"][0],
            "model": pushed["pushed_destination"].string_value,
            "seconds": time.time() - started,
            "trainer_seconds": (training.last_update_time_since_epoch
                                - training.create_time_since_epoch) / 1000.0}


def load_ratings(examples: metadata_store_pb2.Artifact,
                 validation_rule: str = config_lib.RANDOM_VALIDATION) -> Ratings:
    spec = {features.USER_ID: tf.io.FixedLenFeature([], tf.string),
            features.MOVIE_TITLE: tf.io.FixedLenFeature([], tf.string),
            features.RATING: tf.io.FixedLenFeature([], tf.float32),
            features.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64)}

    def read(split):
        files = tf.io.gfile.glob(metadata.split_files(examples, split))
        columns = {name: [] for name in spec}
        for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(8192):
            for name, values in tf.io.parse_example(batch, spec).items():
                columns[name].append(values.numpy())
        return {name: np.concatenate(values) for name, values in columns.items()}

    train, evaluation = read(features.TRAIN_SPLIT), read(features.EVAL_SPLIT)
    titles, _ = catalogue.read_titles_and_genres(
        metadata.split_files(examples, features.MOVIES_SPLIT))
    titles = titles.astype(bytes)
    user_ids = np.unique(np.concatenate([train[features.USER_ID],
                                         evaluation[features.USER_ID]]))
    title_index = {title: i for i, title in enumerate(titles)}

    def indices(split):
        return (np.searchsorted(user_ids, split[features.USER_ID]),
                np.array([title_index[t] for t in split[features.MOVIE_TITLE]]),
                split[features.RATING].astype(np.float64), split[features.TIMESTAMP])

    return Ratings(user_ids, titles, *indices(train), *indices(evaluation), validation_rule)


def load_pushed_model(model_dir: str, data: Ratings):
    """The pushed SavedModel, and for each of `data`'s titles its column in the model's
    catalogue scores."""
    stack.register_scann_ops()
    model = tf.saved_model.load(model_dir)
    first = model.signatures["catalogue_scores"](user_id=tf.constant(data.user_ids[:1]))
    column_of = {t: i for i, t in enumerate(first["titles"].numpy())}
    return model, np.array([column_of[t] for t in data.titles])


def pipeline_model(model_dir: str, data: Ratings, at_request_time: bool) -> dict:
    """The pushed model, scored through its `catalogue_scores_at_time` and `rating_at_time`
    signatures (each eval rating's request at the rating's time, as the Evaluator does) or
    `catalogue_scores` and `rating` (user id alone)."""
    model, columns = load_pushed_model(model_dir, data)
    score_signature, rating_signature = (model.signatures["catalogue_scores"],
                                         model.signatures["rating"])

    def score_users(users):
        return score_signature(user_id=tf.constant(data.user_ids[users]))["scores"].numpy()[
            :, columns]

    def score_at_request_time(rows):
        return model.signatures["catalogue_scores_at_time"](
            user_id=tf.constant(data.user_ids[data.eval_users[rows]]),
            timestamp=tf.constant(data.eval_times[rows]))["scores"].numpy()[:, columns]

    def predict(users, items):
        return rating_signature(user_id=tf.constant(data.user_ids[users]),
                                movie_title=tf.constant(data.titles[items]))["rating"].numpy()

    def predict_at_request_time(rows):
        return model.signatures["rating_at_time"](
            user_id=tf.constant(data.user_ids[data.eval_users[rows]]),
            movie_title=tf.constant(data.titles[data.eval_items[rows]]),
            timestamp=tf.constant(data.eval_times[rows]))["rating"].numpy()

    if at_request_time:
        return {"score_examples": score_at_request_time,
                "predict_examples": predict_at_request_time}
    return {"score_users": score_users, "predict": predict}


def earlier_eval_ratings(data: Ratings, limit: int) -> list[np.ndarray]:
    """Per eval rating: the indices of its user's eval ratings made strictly before it (the
    latest `limit`), what a live product would know at that request."""
    order = np.lexsort([data.eval_times, data.eval_users])
    earlier = [np.empty(0, dtype=np.int64)] * len(order)
    start = 0
    for end in np.flatnonzero(np.diff(data.eval_users[order], append=-1)) + 1:
        rows = order[start:end]
        times = data.eval_times[rows]
        for position, row in enumerate(rows):
            count = np.searchsorted(times, times[position], side="left")
            earlier[row] = rows[max(0, count - limit):count]
        start = end
    return earlier


def pipeline_model_with_recent(model_dir: str, data: Ratings) -> dict:
    """The pushed model asked at each eval rating's time with the user's earlier eval ratings
    (titles, times, stars) in the request (`catalogue_scores_with_recent`,
    `rating_with_recent`): the stored history ends at the split, the request brings the rest."""
    model, columns = load_pushed_model(model_dir, data)
    earlier = earlier_eval_ratings(data, configs.MODEL.recent_history_size)

    def request(rows):
        width = max(1, max(len(earlier[row]) for row in rows))
        titles = np.full((len(rows), width), b"", dtype=object)
        times = np.zeros((len(rows), width), dtype=np.int64)
        stars = np.zeros((len(rows), width), dtype=np.float32)
        for position, row in enumerate(rows):
            known = earlier[row]
            titles[position, :len(known)] = data.titles[data.eval_items[known]]
            times[position, :len(known)] = data.eval_times[known]
            stars[position, :len(known)] = data.eval_ratings[known]
        return {"user_id": tf.constant(data.user_ids[data.eval_users[rows]]),
                "timestamp": tf.constant(data.eval_times[rows]),
                "recent_titles": tf.constant(titles), "recent_timestamps": tf.constant(times),
                "recent_ratings": tf.constant(stars)}

    def score_examples(rows):
        return model.signatures["catalogue_scores_with_recent"](**request(rows))[
            "scores"].numpy()[:, columns]

    def predict_examples(rows):
        ratings = []
        for start in range(0, len(rows), 4096):
            batch = rows[start:start + 4096]
            ratings.append(model.signatures["rating_with_recent"](
                **request(batch), movie_title=tf.constant(data.titles[data.eval_items[batch]]))[
                "rating"].numpy())
        return np.concatenate(ratings)

    return {"score_examples": score_examples, "predict_examples": predict_examples}


def evaluate(name: str, build, data: Ratings, train_seconds: float | None = None) -> dict:
    """Scores the model `build` returns; its training time is the build's, unless given (the
    pipeline's model is trained by its Trainer: loading it is no training)."""
    started = time.time()
    model = build(data)
    trained = time.time() - started if train_seconds is None else train_seconds
    row = {"model": name, "train_seconds": round(trained, 1), **model.get("params", {})}
    if "score_users" in model:
        model["score_examples"] = per_user(model["score_users"], data)
    if "score_examples" in model:
        row.update(top_k_accuracy(model["score_examples"], data))
    if "predict" in model:  # predictions by user and title alone
        model["predict_examples"] = lambda rows: model["predict"](data.eval_users[rows],
                                                                  data.eval_items[rows])
    if "predict_examples" in model:
        row["rmse"] = rmse(model["predict_examples"](np.arange(len(data.eval_users))), data)
    print(f"  {name}: {time.time() - started:.0f} s", flush=True)
    return row


def peer_models() -> dict:
    """The peers, by the name their rows carry."""
    return {
        "TFRS multi-task tutorial, joint (3 epochs)": seed_tutorial.seed_tutorial,
        "most popular": peers.most_popular,
        "most popular recently (the last days of training)": peers.recent_popularity,
        "mean rating": peers.mean_rating,
        "EASE": peers.ease,
        "EASE, history weighted by request time": peers.ease_at_request_time,
        "implicit ALS": lambda d: peers.implicit_model(d, "als"),
        "implicit BPR": lambda d: peers.implicit_model(d, "bpr"),
        "SVD (surprise)": lambda d: peers.surprise_model(d, "svd"),
        "SVD++ (surprise)": lambda d: peers.surprise_model(d, "svdpp"),
    }


PIPELINE_ROW = "this pipeline (its Evaluator)"
USER_ID_ONLY_ROW = "this pipeline, user id only (no request time)"
WITH_RECENT_ROW = "this pipeline, ratings since the cut-off in the request"


def score_every_model(run: dict, data: Ratings, peer_names: list[str] | None = None,
                      protocol: str = configs.SPLIT_PROTOCOL) -> list[dict]:
    """Rows: the pipeline's model (by its Evaluator, by the benchmark's metric code at request
    time and by user id alone; under the time protocol also with the ratings made since the
    cut-off in each request), then each peer (all, or those named) on the same split."""
    unknown = set(peer_names or ()) - set(peer_models())
    if unknown:
        raise ValueError(f"Unknown peers {sorted(unknown)}; known: {sorted(peer_models())}.")
    trainer_seconds = round(run["trainer_seconds"])
    rows = [
        {"model": PIPELINE_ROW, "train_seconds": trainer_seconds,
         **{k: v for k, v in run["metrics"].items() if k in COLUMNS},
         "rmse": run["metrics"][contract.RMSE_METRIC]},
        evaluate("this pipeline (benchmark metric code)",
                 lambda d: pipeline_model(run["model"], d, at_request_time=True), data,
                 trainer_seconds),
        evaluate(USER_ID_ONLY_ROW,
                 lambda d: pipeline_model(run["model"], d, at_request_time=False), data,
                 trainer_seconds),
    ]
    if protocol.startswith("time"):
        rows.append(evaluate(WITH_RECENT_ROW,
                             lambda d: pipeline_model_with_recent(run["model"], d), data,
                             trainer_seconds))
    return rows + [evaluate(name, build, data) for name, build in peer_models().items()
                   if peer_names is None or name in peer_names]


def describe_split(protocol: str) -> str:
    if protocol == "random":
        return (f"ExampleGen's random {1 - configs.EVAL_FRACTION:.0%}/{configs.EVAL_FRACTION:.0%} "
                f"split, seed {configs.SPLIT_SEED}")
    return f"ExampleGen's split protocol {protocol}"


def markdown(rows: list[dict]) -> str:
    header = "| model | " + " | ".join(
        c.replace("_accuracy", "").replace("_unrated", " unrated").replace("_", "-")
        for c in COLUMNS) + " | train s |"
    lines = [header, "|" + " --- |" * (len(COLUMNS) + 2)]
    for row in rows:
        cells = [f"{row[c]:.4f}" if c in row else "" for c in COLUMNS]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + f" | {row['train_seconds']} |")
    return "\n".join(lines)


# The README's Protocols table: which results file holds each protocol, and which of its
# models and columns the table shows (the files have them all).
PROTOCOL_RESULTS = (
    (f"random {1 - configs.EVAL_FRACTION:.0%}/{configs.EVAL_FRACTION:.0%}", "quality.json"),
    ("canonical u1-u5, mean (sd)", "protocols.json"),
    (f"time, cut-off at the {1 - configs.EVAL_FRACTION:g} quantile", "quality-time.json"))
PROTOCOL_TABLE_MODELS = (
    PIPELINE_ROW, USER_ID_ONLY_ROW, WITH_RECENT_ROW, "most popular",
    "most popular recently (the last days of training)", "EASE", "implicit ALS",
    "SVD++ (surprise)")
PROTOCOL_TABLE_COLUMNS = (contract.top_k_accuracy_output(10),
                          contract.top_k_accuracy_output(100),
                          contract.top_k_accuracy_output(10, unrated=True), "rmse")


def _protocol_cell(row: dict, column: str) -> str:
    """A value, with its standard deviation over folds where the row has one; empty where the
    model has no such figure."""
    if column not in row:
        return ""
    spread = f" ({row[column + '_std']:.4f})" if column + "_std" in row else ""
    return f"{row[column]:.4f}{spread}"


def protocols_table(results_dir: str) -> str:
    """Protocol x model (the pipeline's rows and the main peers'): top-10, top-100, top-10
    unrated and RMSE, from the latest results of `make bench` (random), `make bench-protocols`
    (the canonical folds' mean and standard deviation) and `make bench PROTOCOL=time`, each
    with its date and commit; a protocol not yet measured is left out."""
    lines = ["| protocol | model | top-10 | top-100 | top-10 unrated | RMSE | measured |",
             "|" + " --- |" * 7]
    for protocol, file_name in PROTOCOL_RESULTS:
        path = os.path.join(results_dir, file_name)
        if not os.path.exists(path):
            continue
        with open(path) as handle:
            result = json.load(handle)
        by_model = {row["model"]: row for row in result.get("summary", result.get("rows", []))}
        for model in PROTOCOL_TABLE_MODELS:
            row = by_model.get(model)
            if row is None:
                continue
            cells = [_protocol_cell(row, column) for column in PROTOCOL_TABLE_COLUMNS]
            lines.append(f"| {protocol} | {model} | " + " | ".join(cells)
                         + f" | {result['measured']}, {result['commit']} |")
    if len(lines) == 2:
        return ("No protocol measured yet: `make bench`, `make bench-protocols` and `make bench "
                "PROTOCOL=time` write this table.")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw-dir", required=True, help="GroupLens ml-100k files")
    parser.add_argument("--output-dir", help="pipeline root (default: benchmarks/.pipeline_run, "
                                             "one per protocol)")
    parser.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR)
    parser.add_argument("--split", default=configs.SPLIT_PROTOCOL,
                        help="split protocol (local_runner.py --split); results of a protocol "
                             "other than random go to quality-<protocol>.{json,md}")
    args = parser.parse_args(argv)
    started = time.time()
    provenance = report.provenance()

    print("Running the pipeline ...", flush=True)
    run = run_pipeline(args.raw_dir, args.output_dir or pipeline_root(args.split), args.split)
    data = load_ratings(run["examples"], runner_args.validation_rule(args.split))
    print(f"Split: {len(data.train_users)} train / {len(data.eval_users)} eval ratings, "
          f"{data.shape[0]} users, {data.shape[1]} titles. Training peers ...", flush=True)

    rows = score_every_model(run, data, protocol=args.split)
    table = markdown(rows)
    os.makedirs(args.results_dir, exist_ok=True)
    result = {"dataset": "movielens/100k-ratings", "split": describe_split(args.split),
              "train_ratings": int(len(data.train_users)),
              "eval_ratings": int(len(data.eval_users)), "titles": int(data.shape[1]),
              "pipeline_seconds": round(run["seconds"]),
              "total_seconds": round(time.time() - started), "rows": rows}
    result.update(provenance)
    name = "quality" if args.split == "random" else f"quality-{args.split.replace(':', '-')}"
    with open(os.path.join(args.results_dir, f"{name}.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    described = (f"MovieLens 100k, {result['split']} ({result['train_ratings']} train / "
                 f"{result['eval_ratings']} eval ratings, {result['titles']} titles); measured "
                 f"{result['measured']} at {result['commit']} by `make bench`. \"train s\": the "
                 f"Trainer's seconds for the pipeline's rows, each peer's fit otherwise.\n\n"
                 f"{table}")
    with open(os.path.join(args.results_dir, f"{name}.md"), "w") as handle:
        handle.write(described + "\n")
    if args.results_dir == DEFAULT_RESULTS_DIR:
        if name == "quality":
            report.put_in_readme("quality", described)
        report.put_in_readme("protocols", protocols_table(args.results_dir))
    print(f"\n{table}\n\nTotal {result['total_seconds']} s. Written to {args.results_dir}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
