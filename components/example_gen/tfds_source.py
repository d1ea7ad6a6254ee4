"""MovieLens through TensorFlow Datasets: dataset names, and building them from local raw files.

Machines without internet cannot let TFDS download GroupLens' archives, and a re-zipped copy fails
TFDS's registered checksum. `prepare_from_raw_dir` therefore runs TFDS's own `Movielens` builder
(same parsing, features and on-disk layout) with its download step pointed at a local directory
of the raw GroupLens files. Afterwards stock `tfds.builder(name, data_dir=...)` reads it anywhere.

TFDS is imported only where a build needs it: the runners check dataset names and raw files
with this module before importing the stack.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import itertools
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow_datasets as tfds

MOVIELENS_VERSIONS = ("100k", "1m", "20m", "25m", "latest-small")

# The files TFDS's parser reads for each format version, the ratings file first.
RAW_FILES = {
    "100k": ("u.data", "u.item", "u.user"),
    "1m": ("ratings.dat", "movies.dat", "users.dat"),
    "20m": ("ratings.csv", "movies.csv"),
    "25m": ("ratings.csv", "movies.csv"),
    "latest-small": ("ratings.csv", "movies.csv"),
}


class DataSourceError(ValueError):
    """The dataset name or the raw files cannot be used; the message names what and where."""


def parse_dataset_name(name: str) -> str:
    """Returns the MovieLens format version of a `movielens/<version>-ratings` name."""
    match = re.fullmatch(r"movielens/(.+)-ratings", name)
    if not match or match.group(1) not in MOVIELENS_VERSIONS:
        known = ", ".join(f"movielens/{version}-ratings" for version in MOVIELENS_VERSIONS)
        raise DataSourceError(f"Unknown TFDS dataset {name!r}: expected one of {known}.")
    return match.group(1)


def catalogue_name(ratings_name: str) -> str:
    """The TFDS name of the movie catalogue that goes with a ratings dataset."""
    return f"movielens/{parse_dataset_name(ratings_name)}-movies"


def check_raw_dir(version: str, raw_dir: str | os.PathLike) -> None:
    """Fails with the missing path named when `raw_dir` lacks a file TFDS's parser reads."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DataSourceError(f"Raw MovieLens directory {str(raw_dir)!r} does not exist.")
    for file_name in RAW_FILES[version]:
        if not (raw_dir / file_name).is_file():
            raise DataSourceError(
                f"Raw MovieLens {version} directory {str(raw_dir)!r} has no {file_name!r} "
                f"(expected the GroupLens files {', '.join(RAW_FILES[version])})."
            )
    ratings_path = raw_dir / RAW_FILES[version][0]
    header_lines = 1 if ratings_path.suffix == ".csv" else 0
    if next(itertools.islice(_raw_lines(ratings_path), header_lines, None), None) is None:
        raise DataSourceError(f"Ratings file {str(ratings_path)!r} holds no ratings.")


def raw_dir_fingerprint(version: str, raw_dir: str | os.PathLike) -> str:
    """A digest of the raw files' names and contents (BLAKE2b, about 1 GB/s: under a second
    for ml-25m's 650 MB).

    Part of ExampleGen's parameters, so edited files invalidate TFX's cache while rewritten or
    copied identical files hit it, and of the TFDS build directory, so a stale build is never
    reused.
    """
    check_raw_dir(version, raw_dir)
    digest = hashlib.blake2b(digest_size=8)
    for file_name in RAW_FILES[version]:
        digest.update(file_name.encode() + b"\0")
        with open(Path(raw_dir) / file_name, "rb") as handle:
            digest.update(hashlib.file_digest(handle, "blake2b").digest())
    return digest.hexdigest()


def _raw_lines(path: Path):
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            line = raw.decode("ISO-8859-1").rstrip("\r\n")
            if line.strip():
                yield line_number, line


def ratings_line_format(version: str) -> tuple[str, bool]:
    """(field separator, whether the file starts with a header line) of the ratings file."""
    return {"100k": ("\t", False), "1m": ("::", False)}.get(version, (",", True))


def movie_and_user_ids(version: str, raw_dir: Path) -> tuple[set[str], set[str] | None]:
    _, movies_file, *users_file = RAW_FILES[version]
    separator = {"100k": "|", "1m": "::"}.get(version)
    if separator is None:
        with open(raw_dir / movies_file, newline="", encoding="utf-8") as handle:
            return {row["movieId"] for row in csv.DictReader(handle)}, None
    movies = {line.split(separator)[0] for _, line in _raw_lines(raw_dir / movies_file)}
    users = {line.split(separator)[0] for _, line in _raw_lines(raw_dir / users_file[0])}
    return movies, users


def find_malformed_rating(version: str, raw_dir: str | os.PathLike) -> str | None:
    """Describes the first ratings line TFDS's parser cannot read, naming file and line.

    Used after a failed build, to turn the parser's bare exception into a message a user can act
    on; returns None if every ratings line is well formed.
    """
    raw_dir = Path(raw_dir)
    ratings_path = raw_dir / RAW_FILES[version][0]
    movies, users = movie_and_user_ids(version, raw_dir)
    separator, header = ratings_line_format(version)
    lines = _raw_lines(ratings_path)
    if header:
        next(lines, None)
    for line_number, line in lines:
        fields = line.split(separator)
        where = f"{ratings_path}, line {line_number}"
        if len(fields) != 4:
            return f"{where}: expected 4 fields (user, movie, rating, timestamp), got {line!r}"
        user_id, movie_id, rating, timestamp = fields
        try:
            float(rating)
            int(timestamp)
        except ValueError:
            return f"{where}: rating {rating!r} or timestamp {timestamp!r} is not a number"
        if movie_id not in movies:
            return f"{where}: movie id {movie_id!r} is not in the movies file"
        if users is not None and user_id not in users:
            return f"{where}: user id {user_id!r} is not in the users file"
    return None


def _local_builder_class(raw_dir: str):
    """TFDS's Movielens builder whose download step is replaced by the files in `raw_dir`, and
    whose ratings configs are built a batch at a time (ratings_build.py)."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.structured import movielens

    from components.example_gen import ratings_build

    with tfds.core.registered.skip_registration():

        class Movielens(movielens.Movielens):  # same name: same data dir layout as the public one
            def _split_generators(self, dl_manager):
                del dl_manager  # nothing to download
                return [tfds.core.SplitGenerator(
                    name=tfds.Split.TRAIN, gen_kwargs={"dir_path": raw_dir})]

            def _download_and_prepare(self, dl_manager, download_config):
                version, kind = self.builder_config.name.rsplit("-", 1)
                if kind != "ratings":  # a catalogue: small, TFDS's own build
                    return super()._download_and_prepare(dl_manager, download_config)
                split = ratings_build.write_ratings_split(self, version, Path(raw_dir))
                self.info.set_splits(tfds.core.SplitDict([split]))

    return Movielens


@contextlib.contextmanager
def build_lock(data_dir: str, name: str) -> Iterator[None]:
    """Waits for, then holds, the right to build dataset `name` in `data_dir`.

    TFDS builds into a temporary directory and renames it into place; of two processes building
    the same dataset at once (two runs sharing a TFDS data directory), the second fails on that
    rename. Under this lock the second finds the first's build prepared and reads it, and the
    temporary directories of builds that were killed are removed. Object stores (gs://...) have
    no file locks: there, one build per data directory at a time is the caller's to arrange.
    """
    if "://" in data_dir:
        yield
        return
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, f".{name.replace('/', '_')}.build.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        for unfinished in Path(data_dir, *name.split("/")).glob("incomplete.*"):
            shutil.rmtree(unfinished, ignore_errors=True)
        yield  # closing the file releases the lock


def prepare_from_raw_dir(config: str, raw_dir: str, data_dir: str) -> tfds.core.DatasetBuilder:
    """Builds `movielens/<config>` under `data_dir` from raw GroupLens files, unless present.

    Returns the stock TFDS builder for the prepared dataset.
    """
    import tensorflow_datasets as tfds

    version = config.rsplit("-", 1)[0]
    check_raw_dir(version, raw_dir)
    name = f"movielens/{config}"
    with build_lock(data_dir, name):
        builder = tfds.builder(name, data_dir=data_dir)
        if builder.is_prepared():
            return builder
        local_builder = _local_builder_class(str(Path(raw_dir).resolve()))(
            config=config, data_dir=data_dir)
        try:
            local_builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(try_download_gcs=False))
        except Exception as error:
            problem = find_malformed_rating(version, raw_dir) or f"{type(error).__name__}: {error}"
            raise DataSourceError(f"Cannot build {name} from {raw_dir!r}: {problem}") from error
    return tfds.builder(name, data_dir=data_dir)
