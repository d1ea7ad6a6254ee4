"""The Evaluator's baseline: the latest blessed model other than the candidate, trained on a
split cut by the same rule.

TFX's LatestBlessedModelStrategy hands a re-run its own candidate as baseline once that model is
blessed: the Evaluator's inputs change, so an identical second run re-evaluates the same model
against itself and the Pusher pushes it again under a new version. This strategy runs after the
Trainer (the pipeline makes it depend on it), so the newest Model artifact is the candidate, and
leaves it out: an identical re-run resolves the same baseline as the first run, and the
Evaluator and the Pusher come from TFX's cache.

It also leaves out models whose training Examples were cut by another split rule (ExampleGen's
`split_rule` property: protocol, eval fraction, seed, hash), found through ML Metadata's lineage
(model <- Trainer execution <- its `examples` input). A model trained under another seed or
protocol has trained on some of the candidate's eval ratings: compared on them, it looks better
than it is, and the candidate would be rejected for it. Under one rule, a rating stays on its
side of the split as the data grows, so models of successive data versions still compare.
"""

from __future__ import annotations

from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)
from tfx.types import artifact, standard_artifacts

SPLIT_RULE_PROPERTY = "split_rule"


def training_split_rules(store, models: list[artifact.Artifact]) -> dict[int, str | None]:
    """Model id -> the `split_rule` of the Examples its Trainer read (None where unknown)."""
    events = store.get_events_by_artifact_ids([model.id for model in models])
    producer = {event.artifact_id: event.execution_id for event in events
                if event.type == metadata_store_pb2.Event.OUTPUT}
    examples_of = {event.execution_id: event.artifact_id
                   for event in store.get_events_by_execution_ids(sorted(set(producer.values())))
                   if event.type == metadata_store_pb2.Event.INPUT and event.path.steps
                   and event.path.steps[0].key == "examples"}
    examples = {example.id: example
                for example in store.get_artifacts_by_id(sorted(set(examples_of.values())))}
    rules = {}
    for model in models:
        example = examples.get(examples_of.get(producer.get(model.id)))
        properties = example.custom_properties if example is not None else {}
        rules[model.id] = (properties[SPLIT_RULE_PROPERTY].string_value
                           if SPLIT_RULE_PROPERTY in properties else None)
    return rules


class LatestBlessedModelOtherThanCandidateStrategy(LatestBlessedModelStrategy):
    def resolve_artifacts(self, store, input_dict: dict[str, list[artifact.Artifact]]):
        key = next((name for name, artifacts in input_dict.items()
                    if artifacts and isinstance(artifacts[0], standard_artifacts.Model)), None)
        if key is not None:
            models = sorted(input_dict[key], key=lambda model: model.id)
            rules = training_split_rules(store, models)
            candidate_rule = rules[models[-1].id]
            input_dict = {**input_dict, key: [
                model for model in models
                if model is models[-1] or (candidate_rule is not None
                                           and rules[model.id] == candidate_rule)]}
        return super().resolve_artifacts(store, input_dict)

    def _resolve(self, input_dict: dict[str, list[artifact.Artifact]], model_channel_key: str,
                 model_blessing_channel_key: str):
        models = sorted(input_dict[model_channel_key], key=lambda model: model.id)
        return super()._resolve({**input_dict, model_channel_key: models[:-1]},
                                model_channel_key, model_blessing_channel_key)
