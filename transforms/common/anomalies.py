"""TFDV Anomalies protos as plain dicts, for summaries and gates: one
{feature, severity, description, environment} per anomaly, and every drift
measurement. Used by the validation gate (ingest) and the features gate.
"""

from typing import List

from tensorflow_metadata.proto.v0 import anomalies_pb2


def anomaly_dicts(anomalies: anomalies_pb2.Anomalies, environment: str) -> List[dict]:
    """One {feature, severity, description, environment} per anomaly of the proto,
    sorted by feature. A dataset-level anomaly has feature ""; an environment
    without rows (data_missing) is an ERROR."""
    out = []
    if anomalies.data_missing:
        out.append({"feature": "", "severity": "ERROR", "environment": environment,
                    "description": f"no {environment} rows: the statistics are empty"})
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        out.append({"feature": "", "severity": anomalies_pb2.AnomalyInfo.Severity.Name(info.severity),
                     "environment": environment, "description": info.description})
    for feature in sorted(anomalies.anomaly_info):
        info = anomalies.anomaly_info[feature]
        out.append({"feature": feature,
                    "severity": anomalies_pb2.AnomalyInfo.Severity.Name(info.severity),
                    "environment": environment, "description": info.description})
    return out


def drift_dicts(anomalies: anomalies_pb2.Anomalies, environment: str) -> List[dict]:
    """Every drift measurement (also those under their threshold) as
    {environment, feature, type, value, threshold}, sorted by feature: the
    distance from the threshold on normal days is how thresholds get tuned."""
    out = []
    for info in anomalies.drift_skew_info:
        for measurement in info.drift_measurements:
            out.append({
                "environment": environment, "feature": ".".join(info.path.step),
                "type": anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(measurement.type),
                "value": measurement.value, "threshold": measurement.threshold})
    return sorted(out, key=lambda d: (d["feature"], d["type"]))
