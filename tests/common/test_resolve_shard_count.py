"""ResolveShardCount under the FnApiRunner: the requested count when set, else
ceil(summed rows / max rows per shard), at least 1."""

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.common.sharding import ResolveShardCount

pytestmark = pytest.mark.composites


@pytest.mark.parametrize("requested,max_rows,counts,expected", [
    (1, 1_000_000, [5, 5], 1),      # a fixed count is kept, whatever the rows
    (7, 2, [5, 5], 7),
    (0, 2, [5, 5], 5),              # auto: ceil(10 / 2)
    (0, 3, [5, 5], 4),              # auto: ceil(10 / 3)
    (0, 1_000_000, [5, 5], 1),
    (0, 2, [], 1),                  # no rows: one shard
])
def test_resolve_shard_count_in_a_pipeline(requested, max_rows, counts, expected):
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        resolved = p | beam.Create(counts) | ResolveShardCount(requested, max_rows)
        assert_that(resolved, equal_to([expected]))
