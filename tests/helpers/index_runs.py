"""Runs that extend the article index, step by step, as the graph job's steps do them
(ReadArticleIndex's current_index, the version's pieces, PublishArticleIndex's check,
create-only commit and swap of CURRENT, then the graph day that names the version), and
the check that no index value names two articles anywhere a reader can look."""

from typing import Dict, List, Sequence

import pyarrow as pa

from transforms.graph import index_store
from transforms.publishing.files import SUCCESS
from transforms.publishing.protocol import publish_day, read_base
from transforms.publishing.readers import load_index, published_manifest
from transforms.publishing.store import Versioned
from transforms.publishing.writers import write_piece


def mapping_of(files: Sequence[str]) -> Dict[str, int]:
    found: Dict[str, int] = {}
    for path in files:
        ids, indexes = index_store.read_index_file(path)
        found.update(zip(ids.to_pylist(), indexes.tolist()))
    return found


def extended(known: Dict[str, int], articles: Sequence[str]) -> Dict[str, int]:
    """`known` with each new article appended after the largest index."""
    mapping = dict(known)
    for article in articles:
        if article not in mapping:
            mapping[article] = max(mapping.values(), default=0) + 1
    return mapping


def index_batch(mapping: Dict[str, int]) -> pa.RecordBatch:
    items = sorted(mapping.items(), key=lambda kv: kv[1])
    return pa.RecordBatch.from_arrays(
        [pa.array([a.encode() for a, _ in items], pa.binary()),
         pa.array([i for _, i in items], pa.int64())], ["article_id", "index"])


def start_run(out: str, index_from: str = "") -> Dict:
    """What the run reads at its start (ReadArticleIndex): the base and the index."""
    base = index_store.current_index(out, index_from)
    return dict(base, known=mapping_of(base["files"]))


def commit_version(out: str, run_id: str, base: Dict, articles: Sequence[str],
                   clock=None, swap: bool = True) -> Dict:
    """The version's pieces, the early check, the create-only commit and the swap of
    CURRENT (PublishArticleIndex; swap=False: a crash right before it); returns the
    version dict the graph day records."""
    mapping = extended(base["known"], articles)
    version = base["next"]
    folder = index_store.version_dir(out, version)
    records = list(write_piece(folder, run_id, "tfrecord", "index", 0, index_batch(mapping),
                               1 << 20))
    index_store.check_unmoved(out, base)
    vocab = max(mapping.values(), default=0) + 1
    publish_day(folder, run_id, records,
                {"kind": index_store.INDEX_KIND, "version": version, "parent": base["version"],
                 "vocab_size": vocab, "seeded_from": base["seeded_from"]},
                ("index",), base=Versioned(None, 0), clock=clock)
    if swap:
        index_store.point_current(out, base, version)
    return {"version": version, "parent": base["version"], "vocab_size": vocab,
            "mapping": mapping}


def publish_graph_day(out: str, day: str, run_id: str, index: Dict, clock=None) -> None:
    """The graph day of the run: its index file set and the version it used."""
    folder = f"{out}/cooccurrence/dt={day}"
    base = read_base(folder)
    records = list(write_piece(folder, run_id, "tfrecord", "index", 0,
                               index_batch(index["mapping"]), 1 << 20))
    publish_day(folder, run_id, records,
                {"article_index": {k: index[k] for k in ("version", "parent", "vocab_size")}},
                ("index",), base=base, clock=clock)


def graph_run(out: str, day: str, run_id: str, articles: Sequence[str], clock=None,
              step=lambda: None) -> int:
    """One whole graph run; `step()` marks its start. Returns the version it made."""
    step()
    base = start_run(out)
    index = commit_version(out, run_id, base, articles, clock)
    publish_graph_day(out, day, run_id, index, clock)
    return index["version"]


def graph_days(out: str, days: Sequence[str]) -> List[str]:
    from apache_beam.io.filesystems import FileSystems
    return [f"{out}/cooccurrence/dt={d}" for d in days
            if FileSystems.exists(f"{out}/cooccurrence/dt={d}/{SUCCESS}")]


def check_one_index(out: str, days: Sequence[str]) -> List[int]:
    """Raise AssertionError unless no index value names two articles (and no article two
    values) across every version on CURRENT's chain and every published graph day among
    `days`, each version extends its parent, and each graph day names a version on the
    chain. Returns the chain, newest first."""
    chain = index_store.chain_down_to(out, index_store.read_current(out), 1)
    by_index: Dict[int, str] = {}
    by_article: Dict[str, int] = {}
    maps = {}
    for version in chain:
        ids, indexes = load_index(index_store.version_dir(out, version))
        maps[version] = dict(zip(ids.to_pylist(), indexes.tolist()))
    for version in chain:
        parent = published_manifest(index_store.version_dir(out, version)).get("parent")
        if parent is not None:
            assert maps[int(parent)].items() <= maps[version].items(), (version, parent)
    for folder in graph_days(out, days):
        used = published_manifest(folder)["article_index"]["version"]
        assert used in chain, (folder, used, chain)
        ids, indexes = load_index(folder)
        maps[folder] = dict(zip(ids.to_pylist(), indexes.tolist()))
    for source, mapping in maps.items():
        for article, index in mapping.items():
            assert by_index.setdefault(index, article) == article, (source, index, article)
            assert by_article.setdefault(article, index) == index, (source, article, index)
    return chain
