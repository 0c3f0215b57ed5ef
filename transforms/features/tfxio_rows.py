"""Raw feature rows as the record batches tf.Transform's TFXIO adapter reads: the raw
schema per entity, its TFXIO, rows in that Arrow form, and a name for a transformed
batch. tfx_bsl and tf.Transform are imported by the functions that need them, so that
building the row batches never loads TensorFlow."""

from typing import Dict

import numpy as np
import pyarrow as pa

from schemas import features as F
from transforms.common.columns import combined
from transforms.common.sharding import mix64, stable_hash


def raw_schema(entity: str):
    """The schema_pb2.Schema of an entity's raw rows."""
    from tensorflow_transform.tf_metadata import schema_utils
    return schema_utils.schema_from_feature_spec(F.raw_feature_spec(entity))


def raw_tfxio(entity: str):
    """The TFXIO of an entity's raw rows (tf.Example record batches, in memory): its
    ArrowSchema() is what tfxio_batch makes, its TensorAdapterConfig() what
    tf.Transform reads them with."""
    from tfx_bsl.public import tfxio
    return tfxio.TFExampleBeamRecord(physical_format="inmem",
                                     telemetry_descriptors=["features", entity],
                                     schema=raw_schema(entity))


_TFXIO_VALUE_TYPES = {"int": pa.int64(), "float": pa.float32(), "string": pa.large_binary()}


def tfxio_batch(table: pa.Table, entity: str) -> pa.RecordBatch:
    """Raw rows -> a record batch in the TFXIO's Arrow form: every feature a
    large_list of int64, float32 or large_binary; a null scalar an empty list."""
    arrays, names = [], []
    schema = tfxio_arrow_schema(entity)
    for name, kind, _ in F.RAW_FEATURES[entity]:
        column = combined(table.column(name))
        value_type = _TFXIO_VALUE_TYPES[kind]
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            arrays.append(column.cast(pa.large_list(value_type)))
        else:
            valid = column.is_valid().to_numpy(zero_copy_only=False)
            offsets = np.zeros(len(column) + 1, dtype=np.int64)
            np.cumsum(valid, out=offsets[1:])
            values = column.drop_null().cast(value_type)
            arrays.append(pa.LargeListArray.from_arrays(pa.array(offsets), values))
        names.append(name)
    by_name = dict(zip(names, arrays))
    return pa.RecordBatch.from_arrays([by_name[f.name].cast(f.type) for f in schema],
                                      schema=schema)


_ARROW_SCHEMAS: Dict[str, pa.Schema] = {}


def tfxio_arrow_schema(entity: str) -> pa.Schema:
    """raw_tfxio(entity).ArrowSchema(), made once a process."""
    if entity not in _ARROW_SCHEMAS:
        _ARROW_SCHEMAS[entity] = raw_tfxio(entity).ArrowSchema()
    return _ARROW_SCHEMAS[entity]


def batch_key(batch: pa.RecordBatch, id_feature: str) -> str:
    """A name for a transformed batch, from the ids it holds (each id appears once in a
    split): 16 hex digits of the xor of their hashes, and the row count."""
    ids = batch.column(batch.schema.get_field_index(id_feature))
    if pa.types.is_list(ids.type) or pa.types.is_large_list(ids.type):
        ids = ids.flatten()
    hashes = mix64(stable_hash(ids.cast(pa.large_string())))
    return f"{int(np.bitwise_xor.reduce(hashes)) if len(hashes) else 0:016x}-{batch.num_rows}"
