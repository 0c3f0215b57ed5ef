"""The known keys of `properties` (schemas.contract.PROPERTY_KEYS) parsed from the rows'
JSON text: typed values for the stages that use them (the ranking lists' surface and
display position) and the statistics' features, which never hold a string the user or a
client sent (docs/events.md#properties). Each distinct text is parsed once per batch.
"""

import json
from typing import Dict, List, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from schemas import contract

KEYS = {key.name: key for key in contract.PROPERTY_KEYS}
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
# The statistics' features: one per known key (free text as its length), and the number of
# keys the contract does not know.
FEATURE_PREFIX = "properties_"
OTHER_KEYS_FEATURE = FEATURE_PREFIX + "other_keys"


def statistics_feature(key: contract.PropertyKey) -> str:
    return FEATURE_PREFIX + key.name + ("_length" if key.free_text else "")


STATISTICS_FEATURES = tuple(statistics_feature(key) for key in contract.PROPERTY_KEYS) + (
    OTHER_KEYS_FEATURE,)


def _objects(properties) -> tuple:
    """(the distinct texts parsed, a JSON object each or None; the rows' indices into them,
    null where the row's properties is null)."""
    if isinstance(properties, pa.ChunkedArray):
        properties = properties.combine_chunks()
    encoded = pc.dictionary_encode(properties.cast(pa.string()))
    objects = []
    for text in encoded.dictionary.to_pylist():
        try:
            value = json.loads(text)
        except ValueError:           # quarantined upstream; a stray one reads as no object
            value = None
        objects.append(value if isinstance(value, dict) else None)
    return objects, encoded.indices


def _typed(value, key: contract.PropertyKey):
    """The value as the contract types it (None for another type); a closed-vocabulary
    string outside its values as "other"."""
    if key.type == "int":
        # The row checks accept JSON integers of any length; one outside int64 reads as
        # absent rather than failing the batch.
        return value if isinstance(value, int) and not isinstance(value, bool) \
            and INT64_MIN <= value <= INT64_MAX else None
    if not isinstance(value, str):
        return None
    return value if key.free_text or value in key.values else contract.OTHER_VALUE


def _column(values: List, arrow_type: pa.DataType, indices: pa.Array) -> pa.Array:
    return pa.array(values, arrow_type).take(indices)


def property_values(properties, names: Sequence[str]) -> Dict[str, pa.Array]:
    """name -> one value per row of the known key `name`, typed as the contract says (int64
    or string), null where the row has no properties, no such key, or a value of another
    type; a closed-vocabulary key's string outside its values reads as "other", so no stage
    carries a string a client made up."""
    objects, indices = _objects(properties)
    found = {}
    for name in names:
        key = KEYS[name]
        values = [None if o is None else _typed(o.get(name), key) for o in objects]
        found[name] = _column(values, pa.int64() if key.type == "int" else pa.string(), indices)
    return found


def _statistics_value(obj, key: contract.PropertyKey):
    value = None if obj is None else _typed(obj.get(key.name), key)
    return len(value) if key.free_text and value is not None else value


def statistics_columns(properties) -> Dict[str, pa.Array]:
    """STATISTICS_FEATURES -> one value per row: an int key's value, a closed-vocabulary
    key's value or "other", a free-text key's length in characters, and the number of keys
    the contract does not know (null where properties is null or not a JSON object)."""
    objects, indices = _objects(properties)
    columns = {}
    for key in contract.PROPERTY_KEYS:
        values = [_statistics_value(o, key) for o in objects]
        arrow_type = pa.string() if key.type == "string" and not key.free_text else pa.int64()
        columns[statistics_feature(key)] = _column(values, arrow_type, indices)
    other = [None if o is None else sum(1 for k in o if k not in KEYS) for o in objects]
    columns[OTHER_KEYS_FEATURE] = _column(other, pa.int64(), indices)
    return columns

