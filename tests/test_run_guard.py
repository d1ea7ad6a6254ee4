"""The output directory's run lock, and marking the executions of a dead run, on a real store."""

import os
import subprocess
import sys
import time

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline import metadata, run_guard


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path):
    with run_guard.exclusive_run(str(tmp_path)):
        assert run_guard.run_in_progress(str(tmp_path))
        with pytest.raises(run_guard.OutputDirBusy, match=f"pid {os.getpid()}, started"):
            with run_guard.exclusive_run(str(tmp_path)):
                pass
    assert not run_guard.run_in_progress(str(tmp_path))
    with run_guard.exclusive_run(str(tmp_path)):  # free again
        pass


def test_the_lock_of_a_killed_process_is_free(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pipeline import run_guard\n"
         f"with run_guard.exclusive_run({str(tmp_path)!r}):\n"
         "    print('locked', flush=True)\n    time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run_guard.run_in_progress(str(tmp_path))
        with pytest.raises(run_guard.OutputDirBusy, match=f"pid {holder.pid}"):
            with run_guard.exclusive_run(str(tmp_path)):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert not run_guard.run_in_progress(str(tmp_path))


def _execution(store, node: str, state) -> metadata_store_pb2.Execution:
    [type_id] = [store.put_execution_type(metadata_store_pb2.ExecutionType(name=node))]
    context_type = store.put_context_type(metadata_store_pb2.ContextType(name="node"))
    [context_id] = store.put_contexts([metadata_store_pb2.Context(
        type_id=context_type, name=f"movielens.{node}")])
    execution = metadata_store_pb2.Execution(type_id=type_id, last_known_state=state)
    execution.custom_properties["__stateful_working_dir_index__"].string_value = "uuid-1"
    [execution_id] = store.put_executions([execution])
    store.put_attributions_and_associations(
        [], [metadata_store_pb2.Association(context_id=context_id, execution_id=execution_id)])
    [execution] = store.get_executions_by_id([execution_id])
    return execution


def test_running_executions_of_a_dead_run_are_failed_and_their_outputs_removed(tmp_path):
    path = str(tmp_path / "metadata.sqlite")
    store = metadata_store.MetadataStore(metadata.sqlite_config(path))
    running = _execution(store, "Trainer", metadata_store_pb2.Execution.RUNNING)
    finished = _execution(store, "Transform", metadata_store_pb2.Execution.COMPLETE)
    partial = [tmp_path / "Trainer" / "model" / str(running.id),
               tmp_path / "Trainer" / "model_run" / str(running.id),
               tmp_path / "Trainer" / ".system" / "executor_execution" / str(running.id),
               tmp_path / "Trainer" / ".system" / "stateful_working_dir" / "uuid-1"]
    kept = [tmp_path / "Trainer" / "model" / "1000", tmp_path / "Transform" / "transform_graph"
            / str(finished.id)]
    for directory in partial + kept:
        directory.mkdir(parents=True)
    started = time.time() * 1000

    [abandoned] = run_guard.abandon_dead_executions(path, str(tmp_path))

    assert (abandoned.execution_id, abandoned.component) == (running.id, "Trainer")
    assert sorted(abandoned.removed) == sorted(str(p) for p in partial)
    assert not any(p.exists() for p in partial) and all(p.exists() for p in kept)
    [marked, untouched] = store.get_executions_by_id([running.id, finished.id])
    assert marked.last_known_state == metadata_store_pb2.Execution.FAILED
    assert "process killed or crashed" in marked.custom_properties["abandoned"].string_value
    assert marked.last_update_time_since_epoch >= started
    assert untouched == finished
    assert run_guard.abandon_dead_executions(path, str(tmp_path)) == []
