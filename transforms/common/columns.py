"""Arrow string columns as numpy codes: the one dictionary encoding every stage uses
(the graph's parts, the examples' user and article codes)."""

from typing import Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def combined(column) -> pa.Array:
    """One array of a column, chunked or not."""
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def sorted_dictionary(strings, sort: bool = True) -> Tuple[np.ndarray, pa.Array]:
    """(code of each value, the distinct values): one hash pass over the values; with
    `sort`, a sort of the distinct ones, so that code order is byte order."""
    encoded = pc.dictionary_encode(combined(strings))
    if not sort:
        return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), \
            encoded.dictionary
    order = pc.sort_indices(encoded.dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    codes = rank[encoded.indices.to_numpy(zero_copy_only=False)]
    return codes, encoded.dictionary.take(pa.array(order, pa.int64()))
