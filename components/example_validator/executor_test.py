from tensorflow_metadata.proto.v0 import anomalies_pb2

from components.example_validator import executor


def test_describe_anomalies_names_split_feature_and_problem():
    anomalies = anomalies_pb2.Anomalies()
    info = anomalies.anomaly_info["user_rating"]
    info.short_description = "Out-of-range values"
    info.description = "Unexpectedly large value: 9."
    anomalies.dataset_anomaly_info.short_description = "Low num examples"
    anomalies.dataset_anomaly_info.description = "Only 3 examples."
    assert executor.describe_anomalies(anomalies, "eval") == [
        "split 'eval', feature 'user_rating': Out-of-range values (Unexpectedly large value: 9.)",
        "split 'eval', dataset: Low num examples (Only 3 examples.)",
    ]
    assert executor.describe_anomalies(anomalies_pb2.Anomalies(), "train") == []
