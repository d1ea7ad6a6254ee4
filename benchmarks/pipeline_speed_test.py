from benchmarks.pipeline_speed import merged_rows

INTEL = "2 cores, Intel(R) Xeon(R) Processor, AVX-512, AMX"
AMD = "2 cores, AMD EPYC, AVX-512"


def row(size: str, machine: str, commit: str) -> dict:
    return {"size": size, "machine": machine, "commit": commit}


def test_a_run_replaces_only_its_own_sizes_on_its_own_kind_of_machine():
    saved = [row("ml-100k", INTEL, "old"), row("ml-1m", INTEL, "old"),
             row("ml-25m", INTEL, "old"), row("ml-100k", AMD, "older")]
    new = [row("ml-100k", AMD, "new"), row("ml-1m", AMD, "new")]
    assert [(r["size"], r["machine"], r["commit"]) for r in merged_rows(saved, new)] == [
        ("ml-100k", AMD, "new"), ("ml-100k", INTEL, "old"),
        ("ml-1m", AMD, "new"), ("ml-1m", INTEL, "old"),
        ("ml-25m", INTEL, "old")]


def test_rows_saved_before_machines_were_recorded_are_kept_apart():
    saved = [{"size": "ml-1m", "commit": "unrecorded"}]
    merged = merged_rows(saved, [row("ml-1m", AMD, "new")])
    assert [r["commit"] for r in merged] == ["new", "unrecorded"]
