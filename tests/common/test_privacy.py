"""Tier 1: pseudonyms, the user-hash split and where the salt comes from."""

import hashlib
import hmac
import sys
import types

import numpy as np
import pyarrow as pa
import pytest

from transforms.common import privacy

pytestmark = pytest.mark.functions

SALT = b"\x00salt with \xff bytes\n"


def test_pseudonym_is_the_lowercase_hex_hmac_sha256_keyed_by_the_salt_bytes():
    for user in ("u1", "사용자-7", ""):
        expected = hmac.new(SALT, user.encode("utf-8"), hashlib.sha256).hexdigest()
        assert privacy.pseudonym(user, SALT) == expected
        assert expected == expected.lower() and len(expected) == 64
    assert privacy.pseudonym("u1", SALT) != privacy.pseudonym("u1", SALT + b"x")


def test_pseudonymize_keeps_nulls_and_hashes_each_distinct_id_once():
    ids = pa.chunked_array([pa.array(["a", None, "b"]), pa.array(["a"])])
    got = privacy.pseudonymize(ids, SALT).to_pylist()
    assert got == [privacy.pseudonym("a", SALT), None, privacy.pseudonym("b", SALT),
                   privacy.pseudonym("a", SALT)]


def test_eval_threshold_is_the_float_bound_rounded_up():
    assert privacy.eval_threshold(0.5) == 2 ** 63
    assert privacy.eval_threshold(0.1) == int(np.ceil((1.0 - 0.1) * 2.0 ** 64))
    assert privacy.eval_threshold(0.25) == 3 * 2 ** 62


def test_in_eval_by_user_compares_the_first_8_bytes_big_endian():
    bound = privacy.eval_threshold(0.25)
    at = f"{bound:016x}" + "0" * 48
    below = f"{bound - 1:016x}" + "f" * 48
    top = "f" * 64
    assert privacy.hash_prefix([at, below, top]).tolist() == [bound, bound - 1, 2 ** 64 - 1]
    assert privacy.in_eval_by_user(pa.array([at, below, top]), 0.25).tolist() == \
        [True, False, True]


def test_the_user_hash_split_draws_about_the_fraction():
    users = pa.array([f"user-{i}" for i in range(20000)])
    share = privacy.in_eval_by_user(privacy.pseudonymize(users, SALT), 0.1).mean()
    assert 0.09 < share < 0.11
    other = privacy.in_eval_by_user(privacy.pseudonymize(users, SALT + b"2"), 0.1)
    assert (other != privacy.in_eval_by_user(privacy.pseudonymize(users, SALT), 0.1)).any()


def test_exactly_one_salt_source_is_required():
    with pytest.raises(ValueError, match="exactly one of --user_id_salt_file"):
        privacy.require_salt_source(None, None)
    with pytest.raises(ValueError, match="exactly one of --user_id_salt_file"):
        privacy.require_salt_source("f", "projects/p/secrets/s/versions/1")
    with pytest.raises(ValueError, match="must be projects/<project>/secrets"):
        privacy.require_salt_source(None, "projects/p/secrets/s")
    privacy.require_salt_source("gs://b/salt", None)
    privacy.require_salt_source(None, "projects/p/secrets/s/versions/latest")


def test_read_salt_from_a_file_keeps_its_bytes(tmp_path):
    path = tmp_path / "salt"
    path.write_bytes(SALT)
    assert privacy.read_salt(str(path), None) == SALT
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        privacy.read_salt(str(tmp_path / "empty"), None)


def test_read_salt_from_secret_manager_asks_for_the_named_version(monkeypatch):
    asked = []

    class Client:
        def access_secret_version(self, name):
            asked.append(name)
            return types.SimpleNamespace(payload=types.SimpleNamespace(data=SALT))

    fake = types.ModuleType("google.cloud.secretmanager")
    fake.SecretManagerServiceClient = Client
    import google.cloud
    monkeypatch.setitem(sys.modules, "google.cloud.secretmanager", fake)
    monkeypatch.setattr(google.cloud, "secretmanager", fake, raising=False)
    name = "projects/demo/secrets/user-id-salt/versions/3"
    assert privacy.read_salt(None, name) == SALT
    assert asked == [name]
