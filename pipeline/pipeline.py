"""The TFX pipeline: wiring only. Every runner (local, Kubeflow/Vertex) builds the same graph."""

from __future__ import annotations

from ml_metadata.proto import metadata_store_pb2
from tensorflow_model_analysis.proto import config_pb2 as tfma_config

# TFX's own modules rather than `tfx.v1`, which also imports the Google Cloud clients (15 s)
# that only a Vertex AI Training run needs.
from tfx.components import Evaluator, Pusher, StatisticsGen, Trainer, Transform
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import pusher_pb2, trainer_pb2, transform_pb2
from tfx.types import standard_artifacts
from tfx.types.channel import Channel

from components import features
from components.example_gen.component import TfdsExampleGen
from components.example_validator.component import StrictExampleValidator
from components.latest_blessed_model_resolver.strategy import (
    LatestBlessedModelOtherThanCandidateStrategy,
)
from components.source_fingerprint import step_source_fingerprint
from components.trainer.config import CUSTOM_CONFIG_KEY

# Transform's and the Trainer's custom_config carry their code's fingerprint, so that edited
# code is not served from TFX's cache (preprocessing_fn takes no custom_config, run_fn ignores
# the key).
SOURCE_FINGERPRINT_KEY = "source_fingerprint"


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    dataset: str,
    eval_fraction: float,
    split_seed: int,
    split_protocol: str,
    max_eval_ratings: int | None,
    schema_path: str,
    preprocessing_fn: str,
    run_fn: str,
    hyperparameters: dict,
    eval_config: tfma_config.EvalConfig,
    evaluator_module: str,
    serving_model_dir: str,
    tfds_data_dir: str | None = None,
    raw_dir: str | None = None,
    metadata_connection_config: metadata_store_pb2.ConnectionConfig | None = None,
    beam_pipeline_args: list[str] | None = None,
    enable_cache: bool = True,
    vertex_training_region: str | None = None,
    vertex_training_job_spec: dict | None = None,
    baseline_excludes_candidate: bool = True,
) -> Pipeline:
    """The whole graph. `vertex_training_*` swap the Trainer's executor for a Vertex AI
    Training job (region, and a CustomJob spec: worker pool machine, accelerator, image).
    `baseline_excludes_candidate`: the Evaluator's baseline is the latest blessed model other
    than the candidate, so that an identical re-run is served from the cache; KFP's compiler
    only knows TFX's stock LatestBlessedModelStrategy, which Kubeflow/Vertex runs keep."""
    # MovieLens from TFDS: train/eval ratings, split reproducibly, and the movie catalogue.
    example_gen = TfdsExampleGen(dataset=dataset, eval_fraction=eval_fraction,
                                 split_seed=split_seed, split_protocol=split_protocol,
                                 max_eval_ratings=max_eval_ratings,
                                 tfds_data_dir=tfds_data_dir, raw_dir=raw_dir)

    # Statistics of every split, for validation and for inspection.
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])

    # The curated schema from schemas/.
    schema_gen = ImportSchemaGen(schema_file=schema_path)

    # Stops the run when the rating splits break the schema (the catalogue has its own shape).
    example_validator = StrictExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"],
        exclude_splits=[features.MOVIES_SPLIT])

    # Vocabularies and feature transforms, analysed on the training split only. The Trainer
    # applies the graph itself, so no transformed copy of the examples is written; nor any
    # statistics: StatisticsGen has the raw data's, and nothing reads the transformed data's
    # (TFDV's two passes were a fifth to a third of Transform's time).
    transform = Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn=preprocessing_fn, materialize=False, disable_statistics=True,
        splits_config=transform_pb2.SplitsConfig(analyze=[features.TRAIN_SPLIT]),
        custom_config={SOURCE_FINGERPRINT_KEY: step_source_fingerprint(preprocessing_fn)})
    transform.add_upstream_node(example_validator)

    # The multi-task TFRS model, exported with its ScaNN index and serving signatures.
    trainer_class, custom_config = Trainer, {
        CUSTOM_CONFIG_KEY: hyperparameters,
        SOURCE_FINGERPRINT_KEY: step_source_fingerprint(run_fn)}
    if vertex_training_job_spec:
        from tfx.v1.extensions import google_cloud_ai_platform as vertex

        trainer_class = vertex.Trainer
        custom_config.update({
            vertex.ENABLE_VERTEX_KEY: True,
            vertex.VERTEX_REGION_KEY: vertex_training_region,
            vertex.TRAINING_ARGS_KEY: vertex_training_job_spec,
        })
    trainer = trainer_class(
        run_fn=run_fn, examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        # The catalogue split rides along: run_fn reads the ratings, then the catalogue.
        train_args=trainer_pb2.TrainArgs(splits=[features.TRAIN_SPLIT, features.MOVIES_SPLIT]),
        eval_args=trainer_pb2.EvalArgs(splits=[features.EVAL_SPLIT]),
        custom_config=custom_config)

    # The latest blessed model (other than the candidate, resolved after training to tell it
    # apart): the baseline that the candidate must not fall behind.
    model_resolver = Resolver(
        strategy_class=(LatestBlessedModelOtherThanCandidateStrategy
                        if baseline_excludes_candidate
                        else LatestBlessedModelStrategy),
        model=Channel(type=standard_artifacts.Model),
        model_blessing=Channel(type=standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    if baseline_excludes_candidate:
        model_resolver.add_upstream_node(trainer)

    # Top-k accuracy over the whole catalogue, RMSE, ScaNN recall; blesses or rejects.
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"], eval_config=eval_config,
        example_splits=[features.EVAL_SPLIT], module_path=evaluator_module)

    # Copies a blessed model to <serving_model_dir>/<version>/; a rejected one goes nowhere.
    pusher = Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_model_dir)))

    return Pipeline(
        pipeline_name=pipeline_name, pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, transform,
                    trainer, model_resolver, evaluator, pusher],
        enable_cache=enable_cache, metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args)
