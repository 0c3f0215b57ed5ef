"""Pseudonymous user ids and the user-hash split (plain functions).

The pseudonym of a user id is the lowercase hex HMAC-SHA256 of the id's UTF-8 bytes,
keyed by the salt's bytes as they are. The salt is read by the workers (a DoFn's
setup()), from a file or a Secret Manager version, never while the pipeline is built
and never taken as an option value (Dataflow shows every option on the job page).

A user is in the eval split of --eval_split=user_hash when the first 8 bytes of the
HMAC (the first 16 hex digits of the pseudonym), as a big-endian unsigned integer, are
at least (1 - fraction) * 2^64: the same users every day for one salt; a new salt
draws new users.
"""

import hashlib
import hmac
import math
from typing import Optional

import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems


def require_salt_source(salt_file: Optional[str], salt_secret: Optional[str]) -> None:
    """At start: exactly one salt source is named (no value is read here)."""
    if bool(salt_file) == bool(salt_secret):
        raise ValueError(
            "give exactly one of --user_id_salt_file (a local or gs:// file holding the salt) "
            "and --user_id_salt_secret (projects/P/secrets/S/versions/V): user ids are "
            "pseudonymised with an HMAC keyed by that salt, and the salt itself is never an "
            "option value")
    if salt_secret and not _is_secret_version(salt_secret):
        raise ValueError(f"--user_id_salt_secret={salt_secret!r} must be "
                         "projects/<project>/secrets/<secret>/versions/<version>")


def _is_secret_version(name: str) -> bool:
    parts = name.split("/")
    return (len(parts) == 6 and parts[0] == "projects" and parts[2] == "secrets"
            and parts[4] == "versions" and all(parts[i] for i in (1, 3, 5)))


def read_salt(salt_file: Optional[str], salt_secret: Optional[str]) -> bytes:
    """The salt's bytes, as they are (a worker calls this in setup())."""
    require_salt_source(salt_file, salt_secret)
    if salt_file:
        with FileSystems.open(salt_file, compression_type="uncompressed") as handle:
            salt = handle.read()
        source = salt_file
    else:
        from google.cloud import secretmanager
        client = secretmanager.SecretManagerServiceClient()
        salt = client.access_secret_version(name=salt_secret).payload.data
        source = salt_secret
    if not salt:
        raise ValueError(f"the user id salt from {source} is empty")
    return salt


def pseudonym(user_id: str, salt: bytes) -> str:
    return hmac.new(salt, user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def pseudonymize(user_ids, salt: bytes) -> pa.Array:
    """Pseudonym of every id (nulls stay null); each distinct id is hashed once."""
    if isinstance(user_ids, pa.ChunkedArray):
        user_ids = user_ids.combine_chunks()
    encoded = user_ids.cast(pa.string()).dictionary_encode()
    names = [None if v is None else pseudonym(v, salt)
             for v in encoded.dictionary.to_pylist()]
    return pa.array(names, pa.string()).take(encoded.indices)


def eval_threshold(fraction: float) -> int:
    """The smallest 64-bit prefix of an eval user: (1 - fraction) * 2^64 computed in
    floating point as written, rounded up to an integer (the comparison is exact)."""
    return math.ceil((1.0 - float(fraction)) * 2.0 ** 64)


def hash_prefix(pseudonyms) -> np.ndarray:
    """The first 8 bytes of each pseudonym's HMAC as big-endian uint64."""
    if isinstance(pseudonyms, pa.ChunkedArray):
        pseudonyms = pseudonyms.combine_chunks()
    values = pseudonyms.to_pylist() if isinstance(pseudonyms, pa.Array) else list(pseudonyms)
    return np.array([int(v[:16], 16) for v in values], dtype=np.uint64)


def in_eval_by_user(pseudonyms, fraction: float) -> np.ndarray:
    """True where the user is in eval under --eval_split=user_hash."""
    prefix = hash_prefix(pseudonyms)
    threshold = eval_threshold(fraction)
    if threshold >= 1 << 64:
        return np.zeros(len(prefix), dtype=bool)
    return prefix >= np.uint64(threshold)
