"""Fingerprints of step code, so that TFX's cache notices code changes.

Steps name their code by import path (`preprocessing_fn=`, `run_fn=`), so TFX has no module file
to hash: an edited preprocessing_fn would be served from the cache. Each step therefore gets the
fingerprint of its folder's source (tests excluded) and of the shared modules as an execution
property: the same code hits the cache, edited code runs again.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

SHARED_MODULES = ("components.features", "components.evaluation_contract", "components.stack")


def _source_files(module: str) -> list[Path]:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"No Python module {module!r}.")
    path = Path(spec.origin)
    if path.name != "__init__.py":
        return [path]
    return sorted(file for file in path.parent.rglob("*.py")
                  if not file.name.endswith("_test.py"))


def step_source_fingerprint(function_path: str) -> str:
    """Fingerprint of the package holding `function_path` (`package.module.function`, as
    TFX's `preprocessing_fn=` and `run_fn=` take it) and of the shared modules."""
    package = function_path.rsplit(".", 2)[0]
    digest = hashlib.blake2b(digest_size=8)
    for name in (package, *SHARED_MODULES):
        for file in _source_files(name):
            digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()
