"""The preprocessing_fns tested the way tf.Transform tests itself (tier 3): the cases of
tests/helpers/preprocessing_cases.py run in one subprocess beside the features job's run
(tests/helpers/features_runs.py) and are reported here, one test each."""

import pytest

from tests.helpers.preprocessing_cases import CASES

pytestmark = pytest.mark.jobs


@pytest.mark.parametrize("name", sorted(CASES))
def test_preprocessing_case(name, tft_subprocess_results):
    results = tft_subprocess_results["cases"]
    assert set(results) == set(CASES)
    assert results[name] == "ok", results[name]


def test_config_is_checked():
    from transforms.features.preprocessing import config_of
    assert config_of(None) == {"oov_buckets": 1, "vocab_min_frequency": 2, "ctr_prior": 10.0}
    with pytest.raises(ValueError, match="unknown preprocessing config keys"):
        config_of({"oov": 1})
    with pytest.raises(ValueError, match="ctr_prior > 0"):
        config_of({"ctr_prior": 0})
