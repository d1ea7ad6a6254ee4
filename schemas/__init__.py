"""Curated schemas of the MovieLens ratings configs, one file per feature set."""

from pathlib import Path

SCHEMAS_DIR = Path(__file__).resolve().parent


def schema_path(dataset: str) -> str:
    """The schema file for a `movielens/<version>-ratings` dataset."""
    version = dataset.split("/")[-1].removesuffix("-ratings")
    family = version if version in ("100k", "1m") else "current"
    return str(SCHEMAS_DIR / f"movielens-{family}-ratings.pbtxt")
