"""TFDS's `movielens/<version>-ratings` build, done a batch at a time.

TFDS's generator yields one Python dict per rating and serializes it one at a time: about 1,300
ratings a second on 2 cores, 55 s for ml-100k and 7 minutes for ml-1m. Yet a ratings dataset is
a join: each line of the ratings file (user, movie, stars, time) plus its user's and its
movie's attributes. So this build runs TFDS's own parser and feature encoders once per user and
once per movie (over a ratings file holding one line for each), then streams the real ratings
file in Arrow batches, joins each batch to those attributes by id and encodes it to tf.Examples
in C++ (tfx_bsl). The files, features and dataset_info are the ones TFDS writes (the tests
compare both builds example for example); only the order of the examples differs (TFDS
shuffles by a hash of the line number).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import tensorflow as tf
import tensorflow_datasets as tfds
from tfx_bsl.coders import example_coder

from components import features
from components.example_gen import tfds_source

# The fields of a line of the ratings file, in their order in every MovieLens format.
RATING_LINE_FIELDS = (features.USER_ID, features.MOVIE_ID, features.RATING, features.TIMESTAMP)
_LINE_TYPES = (pa.binary(), pa.binary(), pa.float32(), pa.int64())
EXAMPLES_PER_FILE = 1_000_000
# About 200k ratings a batch: ml-1m's build peaks 250 MB above its start (800 MB at 16 MB).
_READ_BLOCK_BYTES = 4 << 20


def to_record_batch(batch: dict[str, Any]) -> pa.RecordBatch:
    """A batch of TFDS features (numpy columns; for sequences, arrays of arrays or 2-D) as an
    Arrow record batch of list columns, as tfx_bsl encodes them: strings -> bytes, floats ->
    float32, ints and bools -> int64."""
    arrays, names = [], []
    for name, column in sorted(batch.items()):
        if column.dtype == object and len(column) and isinstance(column[0], np.ndarray):
            # a sequence feature: one array per row
            values = np.concatenate(list(column))
            offsets = np.concatenate([[0], np.cumsum([len(row) for row in column])])
        else:  # a scalar feature, or a sequence whose rows all have one length (2-D)
            width = column.shape[1] if column.ndim == 2 else 1
            values, offsets = column.reshape(-1), np.arange(len(column) + 1) * width
        if values.dtype.kind in "SUO":
            values = pa.array(values, type=pa.binary())
        elif values.dtype.kind == "f":
            values = pa.array(values.astype(np.float32))
        elif values.dtype.kind in "iub":
            values = pa.array(values.astype(np.int64))
        else:
            raise TypeError(f"Feature {name!r} has unsupported dtype {values.dtype}.")
        arrays.append(pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), values))
        names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names)


class _AttributeTable:
    """One entity's (user's or movie's) encoded attributes, rows in the order of `ids`."""

    def __init__(self, ids: list[str], columns: dict[str, np.ndarray]):
        self.ids = pa.array([value.encode() for value in ids], pa.binary())
        self.columns = columns

    def rows(self, ids: pa.Array, field: str) -> np.ndarray:
        rows = pc.index_in(ids, value_set=self.ids)
        if rows.null_count:
            unknown = ids.filter(pc.is_null(rows))[0].as_py().decode()
            raise KeyError(f"{field} {unknown!r} is not in the {field.split('_')[0]}s file")
        return rows.to_numpy()


def _encoded_column(feature: tfds.features.FeatureConnector, values: list[Any]) -> np.ndarray:
    """TFDS's encoding of each value, as one numpy column (strings as UTF-8 bytes, sequences as
    an object array of int64 arrays)."""
    encoded = [feature.encode_example(value) for value in values]
    column = np.empty(len(encoded), dtype=object)
    if isinstance(feature, tfds.features.Sequence):
        column[:] = [np.asarray(value, np.int64) for value in encoded]
        return column
    dtype = np.dtype(feature.get_serialized_info().np_dtype)
    values = [np.asarray(value).item() for value in encoded]
    if dtype.kind == "O":
        column[:] = [value if isinstance(value, bytes) else value.encode() for value in values]
        return column
    return np.array(values, dtype=dtype)


def _attribute_tables(builder: tfds.core.GeneratorBasedBuilder, version: str,
                      raw_dir: Path) -> tuple[_AttributeTable, _AttributeTable]:
    """Users' and movies' encoded attributes, from TFDS's own parser run over a ratings file
    with one line per user and one per movie."""
    movies, users = tfds_source.movie_and_user_ids(version, raw_dir)
    movies, users = sorted(movies), sorted(users or ())
    separator, header = tfds_source.ratings_line_format(version)
    any_user = users[0] if users else "0"
    lines = ([f"{user}{separator}{movies[0]}{separator}0{separator}0" for user in users]
             + [f"{any_user}{separator}{movie}{separator}0{separator}0" for movie in movies])
    ratings_file, *other_files = tfds_source.RAW_FILES[version]
    with tempfile.TemporaryDirectory() as one_line_each:
        for file_name in other_files:
            os.symlink(raw_dir / file_name, Path(one_line_each, file_name))
        Path(one_line_each, ratings_file).write_text(
            ("userId,movieId,rating,timestamp\n" if header else "") + "\n".join(lines) + "\n",
            encoding="ISO-8859-1")
        examples = [example for _, example in builder._generate_examples(one_line_each)]
    line_fields = set(RATING_LINE_FIELDS)
    movie_fields = set(features.MOVIE_FEATURES) - line_fields
    user_fields = set(builder.info.features) - line_fields - movie_fields

    def table(ids, rows, fields):
        return _AttributeTable(ids, {name: _encoded_column(builder.info.features[name],
                                                           [row[name] for row in rows])
                                     for name in sorted(fields)})

    return (table(users, examples[:len(users)], user_fields),
            table(movies, examples[len(users):], movie_fields))


def _read_ratings(version: str, path: Path) -> pa_csv.CSVStreamingReader:
    separator, header = tfds_source.ratings_line_format(version)
    # "::" is not a single character: split on ":" and keep every other column.
    names = (RATING_LINE_FIELDS if len(separator) == 1 else
             [name for field in RATING_LINE_FIELDS for name in (field, f"_{field}")][:-1])
    return pa_csv.open_csv(
        path,
        read_options=pa_csv.ReadOptions(column_names=names, skip_rows=int(header),
                                        block_size=_READ_BLOCK_BYTES),
        parse_options=pa_csv.ParseOptions(delimiter=separator[0]),
        convert_options=pa_csv.ConvertOptions(
            column_types=dict(zip(RATING_LINE_FIELDS, _LINE_TYPES, strict=True)),
            include_columns=list(RATING_LINE_FIELDS)))


def write_ratings_split(builder: tfds.core.GeneratorBasedBuilder, version: str,
                        raw_dir: Path) -> tfds.core.SplitInfo:
    """Writes the `train` split of the builder's ratings config into `builder.data_path` from
    the GroupLens files in `raw_dir`; returns its SplitInfo."""
    users, movies = _attribute_tables(builder, version, raw_dir)
    template = builder._get_filename_template(split_name="train")
    part_paths, lengths, writer = [], [], None
    for batch in _read_ratings(version, raw_dir / tfds_source.RAW_FILES[version][0]):
        columns = {name: batch.column(name).to_numpy(zero_copy_only=False)
                   for name in RATING_LINE_FIELDS}
        for table, field in ((users, features.USER_ID), (movies, features.MOVIE_ID)):
            if table.columns:
                rows = table.rows(batch.column(field), field)
                columns.update({name: column[rows] for name, column in table.columns.items()})
        for record in example_coder.RecordBatchToExamples(to_record_batch(columns)):
            if writer is None or lengths[-1] == EXAMPLES_PER_FILE:
                if writer is not None:
                    writer.close()
                part_paths.append(f"{template.filepath_prefix()}.part-{len(part_paths)}")
                writer, lengths = tf.io.TFRecordWriter(part_paths[-1]), [*lengths, 0]
            writer.write(record)
            lengths[-1] += 1
    if writer is None:
        raise ValueError(f"{raw_dir / tfds_source.RAW_FILES[version][0]} holds no ratings")
    writer.close()
    num_bytes = 0
    for index, part_path in enumerate(part_paths):
        final_path = template.sharded_filepath(shard_index=index, num_shards=len(part_paths))
        os.rename(part_path, final_path)
        num_bytes += os.path.getsize(final_path)
    return tfds.core.SplitInfo(name="train", shard_lengths=lengths, num_bytes=num_bytes,
                               filename_template=template)
