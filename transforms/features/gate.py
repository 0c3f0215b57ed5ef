"""The features gate: an entity's transformed train and eval statistics validated
against the reviewed features schema; its files (statistics, anomalies, the page,
summary.json last), named for the run and committed with the entity's day by the
publishing protocol, and, when it refuses, the entity's day withdrawn before the
refusal is raised (docs/features.md#the-features-gate)."""

import json
from typing import Dict, List

import apache_beam as beam

from schemas import features as F
from transforms.common.errors import Refusal
from transforms.common.stats_html import render_stats_html
from transforms.common.anomalies import anomaly_dicts
from transforms.publishing.files import write_bytes
from transforms.publishing.latest import withdraw_folder
from transforms.publishing.readers import published_manifest
from transforms.publishing.tfrecord import tfrecord_frame
from transforms.publishing.writers import FileRecord, require_blessed


class FeatureAnomaliesError(Refusal):
    """The feature gate refused an entity's day; its summary.json says why."""


def feature_summary(entity: str, run_date: str, found: List[Dict], allow: bool,
                    rows: Dict[str, int], window: Dict, plan: Dict,
                    daily_run_id: str) -> Dict:
    """summary.json of an entity's day: blessed unless an anomaly is an ERROR (or
    --allow_feature_anomalies, then overridden)."""
    errors = any(a["severity"] == "ERROR" for a in found)
    return {
        "run_date": run_date, "entity": entity, "blessed": (not errors) or allow,
        "overridden": errors and allow, "reasons": ["anomalies"] if errors else [],
        "anomalies": found, "rows": rows, "window": window,
        "lookback": {"used": plan["used"], "skipped": plan["skipped"]},
        "daily_partials_run_id": daily_run_id,
    }


def refusal_message(entity: str, run_date: str, found: List[Dict], summary_path: str) -> str:
    lines = [f"features/{entity} of {run_date} refused: the transformed statistics break "
             "the reviewed schema"]
    lines += [f"[{a['split']}] {a['severity']} {a['feature'] or '(dataset)'}: "
              f"{a['description']}" for a in found]
    lines.append(f"see {summary_path} and the page beside it (this run's, not published; "
                 "--allow_feature_anomalies publishes anyway)")
    return "\n".join(lines)


def published_gate_files(day_dir: str) -> Dict[str, str]:
    """The gate's files of the published day: name (F.STATS_FILES, F.ANOMALIES_FILES,
    F.HTML_FILE, F.SUMMARY_FILE) -> path, from the manifest's "stats" file set."""
    manifest = published_manifest(day_dir)
    suffix = f"-{manifest['run_id']}"
    return {f["name"].replace(suffix, "", 1): f"{day_dir.rstrip('/')}/{f['name']}"
            for f in manifest["file_sets"]["stats"]["files"]}


class GateFeatures(beam.DoFn):
    """Validates an entity's transformed statistics against the reviewed schema, writes
    stats_{train,eval}, anomalies_{train,eval}, stats and, last, summary into the day
    folder under names holding the run id (F.gate_file_name; never a published day's
    file), then emits {"summary", "records"} for the commit or (refused: the day is
    withdrawn first, if still as the run found it at its start; nothing of this run is
    committed) raises FeatureAnomaliesError naming the run's summary, after `on_refusal`
    (the job's report of the day, a picklable callable of {"stage", "reasons",
    "message"} returning a line for the error) when given."""

    def __init__(self, entity: str, final_dir: str, schema_text: str, allow: bool,
                 run_date: str, window: Dict, run_id: str, on_refusal=None):
        self._entity, self._final_dir, self._schema_text = entity, final_dir, schema_text
        self._allow, self._run_date, self._window = allow, run_date, window
        self._run_id, self._on_refusal = run_id, on_refusal

    def process(self, _, train_stats, eval_stats, ingestion, daily_manifest, plan, base=None):
        # Imported here: TFDV loads TensorFlow, kept out of pipeline construction.
        import tensorflow_data_validation as tfdv
        from google.protobuf import text_format
        from tensorflow_metadata.proto.v0 import schema_pb2
        ingestion = require_blessed(ingestion, self._final_dir)
        schema = text_format.Parse(self._schema_text, schema_pb2.Schema())
        environment = F.ENVIRONMENTS[self._entity]
        stats = {"train": train_stats, "eval": eval_stats}
        anomalies = {split: tfdv.validate_statistics(stats[split], schema,
                                                     environment=environment)
                     for split in F.SPLITS}
        found = [dict(a, split=split) for split in F.SPLITS
                 for a in anomaly_dicts(anomalies[split], environment)]
        rows = {split: sum(d.num_examples for d in stats[split].datasets)
                for split in F.SPLITS}
        summary = feature_summary(self._entity, self._run_date, found, self._allow, rows,
                                  self._window, plan, daily_manifest["run_id"])
        names = {name: F.gate_file_name(name, self._run_id)
                 for name in list(F.STATS_FILES.values()) + list(F.ANOMALIES_FILES.values())
                 + [F.HTML_FILE, F.SUMMARY_FILE]}
        summary_path = f"{self._final_dir}/{names[F.SUMMARY_FILE]}"
        if not summary["blessed"]:
            # Only a day as the run found it at its start (`base`: _SUCCESS's contents
            # and generation then), never one another run published since.
            summary["withdrawn"] = withdraw_folder(
                self._final_dir, None if base is None else base[1])
        files = {F.STATS_FILES[split]: tfrecord_frame([stats[split].SerializeToString()])
                 for split in F.SPLITS}
        for split in F.SPLITS:
            files[F.ANOMALIES_FILES[split]] = text_format.MessageToString(
                anomalies[split]).encode()
        page = dict(ingestion, blessed=summary["blessed"], overridden=summary["overridden"],
                    reasons=summary["reasons"], anomalies=found, drift=[],
                    run_date=f"{self._run_date} features/{self._entity}")
        files[F.HTML_FILE] = render_stats_html(stats, page).encode("utf-8")
        files[F.SUMMARY_FILE] = (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode()
        for name, data in files.items():   # summary last
            write_bytes(f"{self._final_dir}/{names[name]}", data)
        if not summary["blessed"]:
            message = refusal_message(self._entity, self._run_date, found, summary_path)
            if self._on_refusal is not None:    # the job's report of the day, before it fails
                message += "\n" + self._on_refusal({
                    "stage": f"features/{self._entity}", "reasons": summary["reasons"],
                    "message": message})
            raise FeatureAnomaliesError(message)
        yield {"summary": summary,
               "records": [FileRecord("stats", names[name], 0, len(data), {})
                           for name, data in files.items()]}
