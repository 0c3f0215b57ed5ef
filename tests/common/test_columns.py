"""Tier 1: sorted_dictionary, the dictionary encoding of string columns
(transforms/common/columns.py): distinct values in UTF-8 byte order, codes are
positions; without sorting, the values as first met."""

import random

import pyarrow as pa
import pytest

from transforms.common.columns import sorted_dictionary

pytestmark = pytest.mark.functions

ALPHABET = ["a", "b", "B", "Z", "9", "é", "ü", "中", "\U0001F600", "\x7f", "\x00"]


def byte_sorted(values):
    return sorted(set(values), key=lambda text: text.encode("utf-8"))


def test_sorted_dictionary_byte_order_literal():
    codes, ids = sorted_dictionary(pa.array(["é", "B", "a", "Z9", "", "ab", "a", "B"]))
    assert ids.to_pylist() == ["", "B", "Z9", "a", "ab", "é"]
    assert codes.tolist() == [5, 1, 3, 2, 0, 4, 3, 1]


def test_sorted_dictionary_utf8_byte_order_beyond_the_bmp():
    # U+FF61 sorts before U+1F600 in UTF-8 bytes (EF.. < F0..) though its UTF-16 code
    # unit is larger than the surrogates of U+1F600.
    values = ["\U0001F600", "\uff61", "\x7f", "a\x00", "a", "中"]
    codes, ids = sorted_dictionary(pa.array(values))
    assert ids.to_pylist() == ["a", "a\x00", "\x7f", "中", "\uff61", "\U0001F600"]
    assert codes.tolist() == [5, 4, 2, 1, 0, 3]


def test_sorted_dictionary_of_a_chunked_array_and_of_nothing():
    chunked = pa.chunked_array([["b", "a"], [], ["b", "é", "a"]])
    codes, ids = sorted_dictionary(chunked)
    assert ids.to_pylist() == ["a", "b", "é"]
    assert codes.tolist() == [1, 0, 1, 2, 0]
    codes, ids = sorted_dictionary(pa.array([], pa.string()))
    assert codes.tolist() == [] and ids.to_pylist() == []


def test_sorted_dictionary_randomized():
    rng = random.Random(101)
    for _ in range(50):
        pool = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 4)))
                for _ in range(rng.randint(1, 30))]
        values = [rng.choice(pool) for _ in range(rng.randint(0, 60))]
        codes, ids = sorted_dictionary(pa.array(values, pa.string()))
        expected = byte_sorted(values)
        assert ids.to_pylist() == expected
        assert codes.tolist() == [expected.index(v) for v in values]


def test_unsorted_dictionary_keeps_the_values_as_first_met():
    codes, ids = sorted_dictionary(pa.chunked_array([["b", "a"], ["b", "é"]]), sort=False)
    assert ids.to_pylist() == ["b", "a", "é"]
    assert codes.tolist() == [0, 1, 0, 2]
    assert codes.dtype.name == "int64"
