"""StrictExampleValidator: the stock ExampleValidator, failing the run on any anomaly.

Usage (same arguments as tfx's ExampleValidator):

    StrictExampleValidator(statistics=statistics_gen.outputs["statistics"],
                           schema=schema_gen.outputs["schema"], exclude_splits=["movies"])
"""

from tfx.components import ExampleValidator
from tfx.dsl.components.base import executor_spec

from components.example_validator import executor


class StrictExampleValidator(ExampleValidator):
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
