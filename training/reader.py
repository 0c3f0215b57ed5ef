"""A tf.data reader of published training examples: <output_dir>/examples/<kind>/dt=D/.

Days are found through _SUCCESS and the run's manifest, never a glob
(transforms/publishing/readers.py). Two steps, so that the days are checked (and the
vocabulary sized) before TensorFlow builds anything:

    days = open_days("gs://bucket/out", "skipgram")            # checks, no TensorFlow
    train = days.dataset(batch_size=4096, seed=7)              # tf.data.Dataset

or in one call, `make_dataset(output_dir, kind, ...)`. Which days are read, what is
refused (a ValueError naming the day and why), what a batch holds and how shuffling
works: docs/reader.md.

The tf.data building and the feature specs are training/dataset.py; their public names
(AUTOTUNE, SKIPGRAM_CHUNK_PAIRS, MAX_FILES_AT_ONCE, SEQUENCE_CHUNK_RECORDS,
feature_spec_to_tf) are imported here, so `from training.reader import X` works as before.
"""

import dataclasses
import datetime as dt
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import google_crc32c
from apache_beam.io.filesystems import FileSystems

from schemas import contract
# The public names of training.dataset, named here as before.
from training.dataset import AUTOTUNE, MAX_FILES_AT_ONCE, SEQUENCE_CHUNK_RECORDS, \
    SKIPGRAM_CHUNK_PAIRS, build_dataset, feature_spec_to_tf
from transforms.graph import index_store
from transforms.publishing.files import SUCCESS
from transforms.publishing.latest import published_days
from transforms.publishing.readers import load_index, manifest_files, published_manifest

KINDS = contract.EXAMPLE_KINDS
SPLITS = contract.SPLITS
EXAMPLES = "examples"
DEFAULT_SHUFFLE_BUFFER = 16_384
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CRC_BLOCK = 1 << 20


@dataclasses.dataclass(frozen=True)
class PublishedDay:
    """One published day of one kind and split, as its manifest describes it."""
    day: str
    folder: str
    manifest: Dict
    files: Tuple[str, ...]          # the split's files, in the manifest's (name) order
    sizes: Tuple[int, ...]          # bytes per file, from the manifest
    crc32c: Tuple[str, ...]         # 8 lowercase hex digits per file, from the manifest
    records: int                    # serialized records in the split's files
    examples: int                   # pairs for skipgram, records otherwise

    @property
    def index_version(self) -> int:
        return int(self.manifest["article_index"]["version"])

    @property
    def index_parent(self) -> Optional[int]:
        parent = self.manifest["article_index"].get("parent")
        return None if parent is None else int(parent)

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["article_index"]["vocab_size"])


@dataclasses.dataclass(frozen=True)
class ExampleDays:
    """Checked days of one kind and split; `dataset()` reads them."""
    output_dir: str
    kind: str
    split: str
    days: Tuple[PublishedDay, ...]          # ascending by day
    feature_spec: Dict                      # the manifests' (equal on every day)
    vocab_size: int                         # the largest of the days': embed this many ids
    index_version: int                      # the newest of the days' index versions
    skipgram_negatives: Optional[int]       # negatives per pair (skipgram), else None
    pairs_per_record: Optional[int]         # the largest of the days' (skipgram), else None

    @property
    def files(self) -> Tuple[str, ...]:
        return tuple(f for d in self.days for f in d.files)

    @property
    def records(self) -> int:
        return sum(d.records for d in self.days)

    @property
    def examples(self) -> int:
        """What the dataset yields in all, before batching: pairs for skipgram."""
        return sum(d.examples for d in self.days)

    def tf_feature_spec(self):
        return feature_spec_to_tf(self.feature_spec)

    def dataset(self, batch_size: int = 256, shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
                seed: Optional[int] = None, num_parallel_reads: int = AUTOTUNE,
                drop_remainder: bool = False, deterministic: bool = True):
        """The days' examples, parsed and batched (shapes: docs/reader.md#batches).

        shuffle_buffer: about how many examples a shuffle mixes (0: no shuffling; the
        files are then read in day order, each file's records in order, interleaved
        chunk by chunk `num_parallel_reads` files at a time: one at a time gives file
        order). Shuffling shuffles the files, then
          * sequences, ranking: permutes blocks of shuffle_buffer records (made of
            chunks of SEQUENCE_CHUNK_RECORDS records of the files read at once), so a
            batch draws from a whole block;
          * skipgram: shuffles chunks of whole records (>= SKIPGRAM_CHUNK_PAIRS pairs) in
            a buffer of about shuffle_buffer pairs and permutes the pairs of each chunk.
            The job already writes a day's pairs in a seeded random order.
        seed: fixes every shuffle; each pass over the dataset (e.g. each epoch of a
        repeat()) is shuffled anew, the same way on every run with that seed.
        deterministic: False lets parallel steps hand out elements as they finish.
        """
        return build_dataset(self, batch_size, shuffle_buffer, seed, num_parallel_reads,
                             drop_remainder, deterministic)

    def vocabulary(self) -> Tuple:
        """(article ids, indexes) of the article index version the days were written
        with (`index_version`, the newest of theirs): a pyarrow string array and an
        int64 numpy array, position by position, read from
        <output_dir>/article_index/v=NNNNNN (docs/reader.md#the-vocabulary)."""
        return load_index(index_store.version_dir(self.output_dir, self.index_version))


# ---------------------------------------------------------------------------------------------
# Days: which, and whether they may be read together


def kind_dir(output_dir: str, kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {KINDS}")
    return f"{output_dir.rstrip('/')}/{EXAMPLES}/{kind}"


def default_days(output_dir: str, kind: str, split: str = "train", last_n_days: int = 7,
                 until: Optional[str] = None) -> List[str]:
    """train: the last `last_n_days` published days up to `until` (default: all);
    eval: the newest published day up to `until` only (why: docs/reader.md#which-days)."""
    _check_split(split)
    if last_n_days < 1:
        raise ValueError(f"last_n_days={last_n_days} must be >= 1")
    root = kind_dir(output_dir, kind)
    days = published_days(root)
    if until is not None:
        days = [d for d in days if d <= _day(until)]
    if not days:
        raise ValueError(f"{root} has no published day (no dt=YYYY-MM-DD/{SUCCESS})"
                         + (f" up to {until}" if until is not None else ""))
    return days[-1:] if split == "eval" else days[-last_n_days:]


def open_days(output_dir: str, kind: str, split: str = "train",
              days: Optional[Iterable] = None, last_n_days: int = 7,
              until: Optional[str] = None, allow_unblessed: bool = False,
              verify_crc32c: bool = False) -> ExampleDays:
    """Find and check the days to read (no TensorFlow; refusals: docs/reader.md#refusals)."""
    _check_split(split)
    root = kind_dir(output_dir, kind)
    names = default_days(output_dir, kind, split, last_n_days, until) if days is None \
        else sorted({_day(d) for d in days})
    if not names:
        raise ValueError("days is empty: name at least one day, or pass days=None")
    loaded = [_load_day(root, kind, split, name, allow_unblessed) for name in names]
    spec = _agreed(loaded, "feature spec", lambda d: d.manifest["feature_spec"])
    negatives = per_record = None
    if kind == "skipgram":
        negatives = int(_agreed(loaded, "skipgram_negatives",
                                lambda d: d.manifest["options"]["skipgram_negatives"]))
        per_record = max(int(d.manifest["options"]["skipgram_pairs_per_record"])
                         for d in loaded)
    check_index_versions(output_dir, kind, loaded)
    for day in loaded:
        verify_files(day, crc32c=verify_crc32c)
    return ExampleDays(output_dir=output_dir.rstrip("/"), kind=kind, split=split,
                       days=tuple(loaded), feature_spec=spec,
                       vocab_size=max(d.vocab_size for d in loaded),
                       index_version=max(d.index_version for d in loaded),
                       skipgram_negatives=negatives, pairs_per_record=per_record)


def make_dataset(output_dir: str, kind: str, split: str = "train",
                 days: Optional[Iterable] = None, last_n_days: int = 7, batch_size: int = 256,
                 shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, seed: Optional[int] = None,
                 num_parallel_reads: int = AUTOTUNE, until: Optional[str] = None,
                 allow_unblessed: bool = False, verify_crc32c: bool = False,
                 drop_remainder: bool = False, deterministic: bool = True):
    """open_days(...).dataset(...): a tf.data.Dataset of parsed, batched examples of
    published days. For the vocabulary size and the feature spec, call open_days."""
    return open_days(output_dir, kind, split, days, last_n_days, until, allow_unblessed,
                     verify_crc32c).dataset(batch_size, shuffle_buffer, seed,
                                            num_parallel_reads, drop_remainder, deterministic)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {SPLITS}")


def _day(value) -> str:
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    if not _DAY_RE.match(text):
        raise ValueError(f"day {value!r} is not a date YYYY-MM-DD")
    dt.date.fromisoformat(text)
    return text


def _load_day(root: str, kind: str, split: str, day: str,
              allow_unblessed: bool) -> PublishedDay:
    folder = f"{root}/dt={day}"
    if not FileSystems.exists(f"{folder}/{SUCCESS}"):
        raise ValueError(f"day {day} of {kind}: {folder} has no {SUCCESS}, so the day is not "
                         "published (its run never finished, or the day was withdrawn)")
    manifest = published_manifest(folder)
    if manifest.get("kind") != kind or manifest.get("run_date") != day:
        raise ValueError(f"day {day} of {kind}: the manifest of {folder} describes kind "
                         f"{manifest.get('kind')!r}, day {manifest.get('run_date')!r}")
    validation = manifest.get("validation")
    if not allow_unblessed:
        if not isinstance(validation, dict) or validation.get("blessed") is not True:
            raise ValueError(f"day {day} of {kind}: its validation is not blessed "
                             f"({folder} manifest validation: {validation!r}); pass "
                             "allow_unblessed=True to read it anyway")
        if validation.get("overridden"):
            raise ValueError(f"day {day} of {kind}: it was blessed by an override of the "
                             f"validation gate (--allow_anomalies), not by passing it; pass "
                             "allow_unblessed=True to read it anyway")
    if split not in manifest["file_sets"]:
        raise ValueError(f"day {day} of {kind}: {folder} has no file set {split!r} "
                         f"(it has {sorted(manifest['file_sets'])})")
    entries = manifest["file_sets"][split]["files"]
    records = int(manifest["file_sets"][split]["rows"])
    examples = int(manifest["counts"][f"skipgram_pairs_{split}"]) if kind == "skipgram" \
        else records
    return PublishedDay(day=day, folder=folder, manifest=manifest,
                        files=tuple(manifest_files(folder, manifest, split)),
                        sizes=tuple(int(e["size_bytes"]) for e in entries),
                        crc32c=tuple(str(e.get("crc32c", "")) for e in entries),
                        records=records, examples=examples)


def _agreed(days: Sequence[PublishedDay], what: str, value_of):
    """The value every day has; raises naming two days that differ."""
    first = days[0]
    for day in days[1:]:
        if value_of(day) != value_of(first):
            raise ValueError(f"days {first.day} and {day.day} of {first.manifest['kind']} "
                             f"differ in their {what} ({value_of(first)!r} vs "
                             f"{value_of(day)!r}); read them separately")
    return value_of(first)


def index_chain(output_dir: str, version: int) -> Dict[int, Dict]:
    """{version: its published manifest} for `version` and each of its ancestors, read
    from <output_dir>/article_index/v=NNNNNN through _SUCCESS."""
    chain: Dict[int, Dict] = {}
    current: Optional[int] = version
    while current is not None:
        folder = index_store.version_dir(output_dir, current)
        if not FileSystems.exists(f"{folder}/{SUCCESS}"):
            raise ValueError(f"article index version {current} (in the parent chain of "
                             f"version {version}) is not published: {folder} has no "
                             f"{SUCCESS}")
        manifest = published_manifest(folder)
        if int(manifest.get("version", -1)) != current:
            raise ValueError(f"{folder}: its manifest names version "
                             f"{manifest.get('version')!r}, not {current}")
        chain[current] = manifest
        parent = manifest.get("parent")
        if parent is not None and not 1 <= int(parent) < current:
            raise ValueError(f"{folder}: parent {parent!r} of version {current} is not an "
                             "earlier version")
        current = None if parent is None else int(parent)
    return chain


def check_index_versions(output_dir: str, kind: str, days: Sequence[PublishedDay]) -> None:
    """Refuse days whose article indexes disagree (docs/reader.md#refusals)."""
    by_version: Dict[int, PublishedDay] = {}
    for day in days:
        seen = by_version.setdefault(day.index_version, day)
        if (seen.index_parent, seen.vocab_size) != (day.index_parent, day.vocab_size):
            raise ValueError(
                f"days {seen.day} and {day.day} of {kind} both name article index version "
                f"{day.index_version} but disagree on it (parent {seen.index_parent} vs "
                f"{day.index_parent}, vocab_size {seen.vocab_size} vs {day.vocab_size}): "
                "they come from different indexes")
    if len(by_version) == 1:
        return
    newest = max(by_version)
    chain = index_chain(output_dir, newest)
    path = " -> ".join(str(v) for v in chain) + " -> (root)"
    for version, day in sorted(by_version.items()):
        if version not in chain:
            raise ValueError(
                f"day {day.day} of {kind} was written with article index version {version}, "
                f"which is not an ancestor of version {newest} (day "
                f"{by_version[newest].day}; parent chain {path}): the two days' indexes "
                "disagree, so one index may name different articles on them. Read them "
                "separately, or rebuild the older day on the current index")
        stored = chain[version]
        stored_parent = stored.get("parent")
        stored = (None if stored_parent is None else int(stored_parent),
                  int(stored["vocab_size"]))
        if stored != (day.index_parent, day.vocab_size):
            raise ValueError(
                f"day {day.day} of {kind} names article index version {version} with parent "
                f"{day.index_parent} and vocab_size {day.vocab_size}, but "
                f"{index_store.version_dir(output_dir, version)} has parent {stored[0]} and "
                f"vocab_size {stored[1]}: the day was written with another index")


def verify_files(day: PublishedDay, crc32c: bool = False) -> None:
    """Each listed file exists with the manifest's size; with crc32c, its CRC32C too."""
    if not day.files:
        return
    results = FileSystems.match(list(day.files))
    for path, size, result in zip(day.files, day.sizes, results):
        found = result.metadata_list
        if not found:
            raise ValueError(f"day {day.day}: {path} is listed in the manifest but absent "
                             "(the day was republished or removed meanwhile)")
        if found[0].size_in_bytes != size:
            raise ValueError(f"day {day.day}: {path} has {found[0].size_in_bytes} bytes, the "
                             f"manifest says {size}")
    if crc32c:
        for path, expected in zip(day.files, day.crc32c):
            actual = file_crc32c(path)
            if actual != expected:
                raise ValueError(f"day {day.day}: {path} has CRC32C {actual}, the manifest "
                                 f"says {expected or '(none)'}")


def file_crc32c(path: str) -> str:
    """CRC32C of a file's bytes as stored, 8 lowercase hex digits."""
    crc = 0
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        while True:
            block = handle.read(_CRC_BLOCK)
            if not block:
                break
            crc = google_crc32c.extend(crc, block)
    return f"{crc:08x}"
