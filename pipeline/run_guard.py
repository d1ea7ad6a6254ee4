"""One run at a time per output directory, and what a killed run left behind.

A run holds an exclusive `flock` on `<output-dir>/.run.lock` for its whole life. The kernel
drops the lock when the process ends, however it ends (kill -9 included), so a free lock proves
that no run is alive: every execution the store still calls RUNNING then belongs to a dead
process. `abandon_dead_executions` marks those FAILED, with the reason, and deletes the output
directories they were writing (TFX publishes output artifacts only when an execution succeeds,
so nothing in the store points at them).

Imports nothing heavy: the runner takes the lock before importing the stack.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import shutil
import time
from collections.abc import Iterator

LOCK_FILE = ".run.lock"
# The custom property an abandoned execution carries, with the reason.
ABANDONED_PROPERTY = "abandoned"


class OutputDirBusy(RuntimeError):
    """Another live run holds the output directory's lock."""


def lock_path(output_dir: str) -> str:
    return os.path.join(output_dir, LOCK_FILE)


def _holder(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read().strip() or "a process that has not written its id yet"
    except OSError:
        return "an unknown process"


@contextlib.contextmanager
def exclusive_run(output_dir: str) -> Iterator[None]:
    """Holds `output_dir`'s run lock, or raises OutputDirBusy naming the run that holds it."""
    os.makedirs(output_dir, exist_ok=True)
    path = lock_path(output_dir)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputDirBusy(
                f"Output directory {output_dir!r} is in use by another run ({_holder(path)}; "
                f"lock {path}). Wait for it to finish, or pass another --output-dir.") from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}"
                             .encode())
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def run_in_progress(output_dir: str) -> bool:
    """Whether a live run holds `output_dir`'s lock (without taking it for long)."""
    path = lock_path(output_dir)
    if not os.path.exists(path):
        return False
    descriptor = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)


@dataclasses.dataclass
class AbandonedExecution:
    execution_id: int
    component: str
    removed: list[str]


def _orphan_dirs(pipeline_root: str, component: str, execution) -> list[str]:
    """What TFX's launcher creates for an execution before running it: one directory per output
    (`<node>/<output key>/<execution id>`), its temp dir and its stateful working dir."""
    node_dir = os.path.join(pipeline_root, component)
    if not os.path.isdir(node_dir):
        return []
    found = [os.path.join(node_dir, key, str(execution.id)) for key in os.listdir(node_dir)]
    found.append(os.path.join(node_dir, ".system", "executor_execution", str(execution.id)))
    working_dir_index = execution.custom_properties.get("__stateful_working_dir_index__")
    if working_dir_index is not None and working_dir_index.string_value:
        found.append(os.path.join(node_dir, ".system", "stateful_working_dir",
                                  working_dir_index.string_value))
    return [path for path in found if os.path.isdir(path)]


def abandon_dead_executions(metadata_path: str, pipeline_root: str) -> list[AbandonedExecution]:
    """Marks every execution still RUNNING (or NEW) in the store FAILED, as abandoned, and
    removes its unpublished output directories. Call only while holding the run lock."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    from pipeline import metadata

    if not os.path.isfile(metadata_path):
        return []
    store = metadata_store.MetadataStore(metadata.sqlite_config(metadata_path))
    active = (metadata_store_pb2.Execution.RUNNING, metadata_store_pb2.Execution.NEW)
    abandoned = []
    for execution in store.get_executions():
        if execution.last_known_state not in active:
            continue
        component = metadata.component_name(store, execution.id)
        removed = _orphan_dirs(pipeline_root, component, execution)
        for path in removed:
            shutil.rmtree(path, ignore_errors=True)
        execution.last_known_state = metadata_store_pb2.Execution.FAILED
        execution.custom_properties[ABANDONED_PROPERTY].string_value = (
            "its run ended without finishing it (process killed or crashed); found "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}, removed {removed or 'nothing'}")
        store.put_executions([execution])
        abandoned.append(AbandonedExecution(execution.id, component, removed))
    return abandoned
