"""What every benchmark's report shares: the commit measured, and its table in the README.

The README's Results section holds each benchmark's latest table between markers
(`<!-- NAME:start -->` ... `<!-- NAME:end -->`) that only the benchmark itself rewrites, so the
figures there are always those of the latest run, with its date and commit.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def source_commit() -> str:
    """The commit measured, marked `+changes` when the code differs from it."""
    def git(*arguments):
        return subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "components", "pipeline",
                "serving")
    return git("rev-parse", "--short", "HEAD") + ("+changes" if dirty else "")


def provenance() -> dict[str, str]:
    """The `measured` date and `commit` of a run. Read it before the run starts: code edited
    during an hour-long run must not relabel it."""
    return {"measured": time.strftime("%Y-%m-%d"), "commit": source_commit()}


def machine() -> str:
    """The cores and processor measured on, e.g. "2 cores, AMD EPYC, AVX-512": timings from
    different processors are not comparable, even at the same core count. "AMX": the cores
    multiply bfloat16 in hardware, which the Trainer uses at ml-1m's size
    (model.cpu_multiplies_bfloat16)."""
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    parts = [f"{os.cpu_count()} cores", model or "processor unknown"]
    if "avx512f" in flags:
        parts.append("AVX-512")
    if "amx_bf16" in flags:
        parts.append("AMX")
    return ", ".join(parts)


def put_in_readme(name: str, text: str, readme: Path = README) -> None:
    """Replaces what sits between the README's `name` markers with `text`."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    content = readme.read_text()
    if start not in content or end not in content:
        raise ValueError(f"{readme} has no {start} ... {end} markers.")
    before, rest = content.split(start, 1)
    readme.write_text(f"{before}{start}\n{text}\n{end}{rest.split(end, 1)[1]}")
