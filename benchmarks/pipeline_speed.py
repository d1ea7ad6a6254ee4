"""Pipeline cost at several sizes: cold and fully cached runs, per component, memory, model size.

    make bench-speed RAW_DIR=../shared/datasets/ml-100k            # ml-100k (real) and ml-1m shape
    .venv/bin/python -m benchmarks.pipeline_speed --sizes ml-1m --with-ml-25m

Each size runs `local_runner.py` twice in fresh processes on the same output directory: cold
(an empty directory), then again unchanged (every component should come from TFX's cache).
Sizes: `ml-100k` (the real files with --raw-dir, else a synthetic set of its shape), and
synthetic sets shaped like `ml-1m` and `ml-25m` (components/example_gen/synthetic.py: the
published user and title counts, heavy-tailed activity, Zipf popularity, sittings), written in
their own GroupLens formats. ml-25m is opt-in and runs under a time limit: its row reports how
far the pipeline got. Prints a Markdown table; writes benchmarks/results/pipeline_speed.json and
pipeline_speed.md, and puts the table in the README between its pipeline_speed markers
(`--report` does only that, from the saved JSON). A run replaces the saved rows of its sizes
measured on the same kind of machine (`report.machine()`) and keeps the others: timings from
different processors are not comparable, so the table holds the latest of each.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks import report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SIZES = ("ml-100k", "ml-1m", "ml-25m")
DATASETS = {"ml-100k": ("100k", "movielens/100k-ratings"), "ml-1m": ("1m", "movielens/1m-ratings"),
            "ml-25m": ("25m", "movielens/25m-ratings")}
COMPONENTS = ("TfdsExampleGen", "StatisticsGen", "Transform", "Trainer", "Evaluator", "Pusher")
TRAINER_LINE = re.compile(
    r"Trained on (\d+) examples \(([\d.]+) passes over (\d+)\) in ([\d.]+) s: (\d+) examples/s")


def synthetic_raw_dir(size: str, work_dir: Path) -> Path:
    """Writes (once) the synthetic set shaped like `size` in its GroupLens format."""
    from components.example_gen import synthetic

    directory = work_dir / "raw" / size
    stamp = directory / ".complete"
    if not stamp.exists():
        shutil.rmtree(directory, ignore_errors=True)
        synthetic.write_movielens(directory, DATASETS[size][0], shape=synthetic.SHAPES[size])
        stamp.touch()
    return directory


def run_pipeline(raw_dir: Path, output_dir: Path, dataset: str, limit_s: float,
                 log_path: Path) -> dict:
    """One `local_runner.py` process: wall seconds, peak RSS, exit code, its output (also in
    `log_path`). Killed after `limit_s`."""
    command = [str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "local_runner.py"),
               "--raw-dir", str(raw_dir), "--output-dir", str(output_dir), "--dataset", dataset]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        timer = threading.Timer(limit_s, process.kill)
        timer.start()
        _, status, usage = os.wait4(process.pid, 0)
        timer.cancel()
    wall_s = time.perf_counter() - started
    return {"wall_s": wall_s, "peak_rss_gb": usage.ru_maxrss / 2**20,
            "exit_code": os.waitstatus_to_exitcode(status), "timed_out": wall_s >= limit_s,
            "output": log_path.read_text()}


def component_seconds(output_dir: Path) -> dict[str, dict]:
    from pipeline import metadata

    path = output_dir / "metadata.sqlite"
    if not path.exists():
        return {}
    try:
        runs = metadata.latest_component_runs(str(path))
    except metadata.MetadataError:
        return {}
    return {name: {"state": run.state, "seconds": round(run.seconds, 1)}
            for name, run in runs.items()}


def directory_megabytes(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def measure(size: str, raw_dir: Path, work_dir: Path, limit_s: float) -> dict:
    output_dir = work_dir / "output" / size
    shutil.rmtree(output_dir, ignore_errors=True)
    dataset = DATASETS[size][1]
    row = {"size": size, "raw_dir": str(raw_dir), "dataset": dataset}
    for phase in ("cold", "cached"):
        result = run_pipeline(raw_dir, output_dir, dataset, limit_s,
                              work_dir / "logs" / f"{size}-{phase}.log")
        finished = re.search(r"Pipeline finished in (\d+) s", result["output"])
        components = component_seconds(output_dir)
        row[phase] = {
            "exit_code": result["exit_code"], "timed_out": result["timed_out"],
            "process_s": round(result["wall_s"], 1),
            "pipeline_s": int(finished.group(1)) if finished else None,
            "peak_rss_gb": round(result["peak_rss_gb"], 2),
            "components": components,
            "components_total_s": round(sum(c["seconds"] for c in components.values()), 1),
        }
        trainer = TRAINER_LINE.search(result["output"])
        if trainer:
            trained, passes, examples, seconds, per_second = trainer.groups()
            row[phase]["trainer"] = {"trained_examples": int(trained), "passes": float(passes),
                                     "fit_examples": int(examples), "fit_s": float(seconds),
                                     "examples_per_s": int(per_second)}
        if result["exit_code"] != 0:
            break
    models = output_dir / "serving_model"
    versions = sorted(models.iterdir()) if models.exists() else []
    row["pushed_versions"] = len(versions)
    if versions:
        row["saved_model_mb"] = round(directory_megabytes(versions[-1]), 1)
    return row


# What a local_runner.py run imports once its flags are checked.
RUN_IMPORTS = ("import local_runner, pipeline.pipeline, pipeline.runner_args\n"
               "from tfx.orchestration.local.local_dag_runner import LocalDagRunner")


def import_seconds() -> float:
    """Wall time of importing what a run imports, in a fresh process (warm disk cache)."""
    python = str(ROOT / ".venv" / "bin" / "python")
    subprocess.run([python, "-c", RUN_IMPORTS], cwd=ROOT, check=True)
    started = time.perf_counter()
    subprocess.run([python, "-c", RUN_IMPORTS], cwd=ROOT, check=True)
    return round(time.perf_counter() - started, 1)


def markdown(rows: list[dict], imports_s: float) -> str:
    header = ["size", "commit", "machine", "phase", *COMPONENTS, "components", "pipeline",
              "process", "peak RSS GB", "Trainer examples/s", "SavedModel MB"]
    lines = [f"Imports of the stack (what a `local_runner.py` run imports, fresh process): "
             f"{imports_s} s.", "",
             "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        for phase in ("cold", "cached"):
            if phase not in row:
                continue
            run = row[phase]
            cells = []
            for name in COMPONENTS:
                component = run["components"].get(name)
                cells.append("" if component is None else (
                    "cached" if component["state"] == "CACHED" and phase == "cached"
                    and component["seconds"] < 0.5 else f"{component['seconds']:.1f}"))
            status = "" if run["exit_code"] == 0 else (
                " (time limit)" if run["timed_out"] else f" (exit {run['exit_code']})")
            trainer = run.get("trainer", {}).get("examples_per_s", "")
            lines.append("| " + " | ".join([
                row["size"], row.get("commit", ""), row.get("machine", "not recorded"),
                phase + status, *cells,
                f"{run['components_total_s']:.1f}",
                str(run["pipeline_s"] or ""), f"{run['process_s']:.0f}",
                str(run["peak_rss_gb"] or ""), str(trainer),
                str(row.get("saved_model_mb", "")) if phase == "cold" else ""]) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw-dir", help="the real ml-100k files (else its synthetic shape)")
    parser.add_argument("--sizes", nargs="+", choices=SIZES, default=["ml-100k", "ml-1m"])
    parser.add_argument("--with-ml-25m", action="store_true",
                        help="also run the ml-25m shape (25 M ratings; 80 minutes on 2 cores)")
    parser.add_argument("--ml-25m-limit-s", type=float, default=3 * 3600,
                        help="time limit of each ml-25m run (default 3 h)")
    parser.add_argument("--work-dir", default=str(ROOT / "benchmarks" / ".speed_runs"))
    parser.add_argument("--report", action="store_true",
                        help="only render the saved results into the Markdown and the README")
    args = parser.parse_args(argv)
    if args.report:
        write_report(json.loads((RESULTS / "pipeline_speed.json").read_text()))
        return 0
    sizes = list(dict.fromkeys(args.sizes + (["ml-25m"] if args.with_ml_25m else [])))
    work_dir = Path(args.work_dir)
    provenance = report.provenance()
    rows = []
    for size in sizes:
        raw_dir = (Path(args.raw_dir).resolve() if size == "ml-100k" and args.raw_dir
                   else synthetic_raw_dir(size, work_dir))
        limit = args.ml_25m_limit_s if size == "ml-25m" else 3 * 3600
        rows.append({**measure(size, raw_dir, work_dir, limit),
                     "data": "real" if size == "ml-100k" and args.raw_dir else "synthetic",
                     **provenance, "machine": report.machine()})
    saved = RESULTS / "pipeline_speed.json"
    results = {"measured": time.strftime("%Y-%m-%d"), "machine": report.machine(),
               "imports_s": import_seconds(),
               "rows": merged_rows(json.loads(saved.read_text())["rows"] if saved.exists() else [],
                                   rows)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline_speed.json").write_text(json.dumps(results, indent=1))
    write_report(results)
    return 0


def merged_rows(saved: list[dict], new: list[dict]) -> list[dict]:
    """The saved rows less those the new ones replace (same size, same machine), then the new
    ones; by size, each size's rows by machine."""
    replaced = {(row["size"], row["machine"]) for row in new}
    kept = [row for row in saved
            if (row["size"], row.get("machine", "not recorded")) not in replaced]
    return sorted(kept + new, key=lambda row: (SIZES.index(row["size"]),
                                                row.get("machine", "not recorded")))


def write_report(results: dict) -> None:
    """Prints the table and writes it to pipeline_speed.md and the README."""
    table = (f"Measured by `make bench-speed`, each row at the commit and on the machine it "
             f"names (the import time: {results['measured']}, {results['machine']}); seconds "
             "per component from ML Metadata.\n\n"
             + markdown(results["rows"], results["imports_s"]))
    print("\n" + table)
    (RESULTS / "pipeline_speed.md").write_text(f"# Pipeline speed\n\n{table}\n")
    report.put_in_readme("pipeline_speed", table)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
