"""The Evaluator's baseline: the latest blessed model other than the candidate.

TFX's LatestBlessedModelStrategy hands a re-run its own candidate as baseline once that model is
blessed: the Evaluator's inputs change, so an identical second run re-evaluates the same model
against itself and the Pusher pushes it again under a new version. This strategy runs after the
Trainer (the pipeline makes it depend on it), so the newest Model artifact is the candidate, and
leaves it out: an identical re-run resolves the same baseline as the first run, and the
Evaluator and the Pusher come from TFX's cache.
"""

from __future__ import annotations

from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)
from tfx.types import artifact


class LatestBlessedModelOtherThanCandidateStrategy(LatestBlessedModelStrategy):
    def _resolve(self, input_dict: dict[str, list[artifact.Artifact]], model_channel_key: str,
                 model_blessing_channel_key: str):
        models = sorted(input_dict[model_channel_key], key=lambda model: model.id)
        return super()._resolve({**input_dict, model_channel_key: models[:-1]},
                                model_channel_key, model_blessing_channel_key)
