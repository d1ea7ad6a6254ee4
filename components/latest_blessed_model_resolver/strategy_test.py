"""The baseline strategy on a real ML Metadata store (in memory), with the lineage TFX records:
each Model produced by a Trainer execution that read an Examples artifact."""

from __future__ import annotations

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.types import artifact_utils, standard_artifacts

from components.latest_blessed_model_resolver.strategy import (
    LatestBlessedModelOtherThanCandidateStrategy,
)


class Store:
    def __init__(self):
        config = metadata_store_pb2.ConnectionConfig()
        config.fake_database.SetInParent()
        self.store = metadata_store.MetadataStore(config)
        self.types = {cls: self.store.put_artifact_type(cls._get_artifact_type())
                      for cls in (standard_artifacts.Examples, standard_artifacts.Model,
                                  standard_artifacts.ModelBlessing)}
        self.trainer_type = self.store.put_execution_type(
            metadata_store_pb2.ExecutionType(name="Trainer"))
        self.models, self.blessings = [], []

    def _put(self, cls, **properties) -> metadata_store_pb2.Artifact:
        proto = metadata_store_pb2.Artifact(type_id=self.types[cls], uri="/tmp/unused")
        for name, value in properties.items():
            if isinstance(value, str):
                proto.custom_properties[name].string_value = value
            else:
                proto.custom_properties[name].int_value = value
        [proto.id] = self.store.put_artifacts([proto])
        return proto

    def train(self, split_rule: str | None, blessed: bool) -> int:
        """A Model trained on Examples of `split_rule` (None: not recorded), and its blessing."""
        examples = self._put(standard_artifacts.Examples,
                             **({"split_rule": split_rule} if split_rule else {}))
        model = self._put(standard_artifacts.Model)

        def event(kind, key):
            return metadata_store_pb2.Event(type=kind, path=metadata_store_pb2.Event.Path(
                steps=[metadata_store_pb2.Event.Path.Step(key=key)]))

        self.store.put_execution(
            metadata_store_pb2.Execution(type_id=self.trainer_type),
            [(examples, event(metadata_store_pb2.Event.INPUT, "examples")),
             (model, event(metadata_store_pb2.Event.OUTPUT, "model"))], [])
        self.models.append(model)
        self.blessings.append(self._put(standard_artifacts.ModelBlessing,
                                        current_model_id=model.id, blessed=int(blessed)))
        return model.id

    def baseline(self) -> int | None:
        def artifacts(cls, protos):
            return [artifact_utils.deserialize_artifact(cls._get_artifact_type(), proto)
                    for proto in protos]

        resolved = LatestBlessedModelOtherThanCandidateStrategy().resolve_artifacts(
            self.store, {"model": artifacts(standard_artifacts.Model, self.models),
                         "model_blessing": artifacts(standard_artifacts.ModelBlessing,
                                                     self.blessings)})
        return resolved["model"][0].id if resolved["model"] else None


RANDOM_42 = "random eval_fraction=0.2 seed=42 fingerprint64(...)"


@pytest.fixture
def store():
    return Store()


def test_the_baseline_is_the_latest_blessed_model_of_the_same_split_rule(store):
    first = store.train(RANDOM_42, blessed=True)
    store.train(RANDOM_42, blessed=False)
    store.train("canonical:u1", blessed=True)
    store.train(RANDOM_42, blessed=True)  # the candidate
    assert store.baseline() == first


def test_a_candidate_never_is_its_own_baseline(store):
    store.train(RANDOM_42, blessed=True)
    assert store.baseline() is None


def test_models_of_another_or_an_unrecorded_split_rule_are_no_baseline(store):
    store.train(None, blessed=True)
    store.train("random eval_fraction=0.2 seed=7 fingerprint64(...)", blessed=True)
    store.train(RANDOM_42, blessed=True)
    assert store.baseline() is None
