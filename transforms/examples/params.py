"""The examples stage's names and options: the kinds, the splits, the columns it reads,
and ExampleParams, checked when it is made (docs/examples.md)."""

import math
from typing import NamedTuple, Tuple

from schemas import contract
from transforms.common.span import split_boundary_us

KINDS = contract.EXAMPLE_KINDS
SPLITS = contract.SPLITS
EXAMPLE_COLUMNS = ("user_id", "event_id", "event_timestamp", "event_name", "article_id",
                   "region_id", "platform", "properties")
EXAMPLE_EVENTS = (contract.IMPRESSION,) + contract.INTERACTION_EVENTS
STRENGTH = contract.ENGAGEMENT_STRENGTH


class ExampleParams(NamedTuple):
    run_date: str
    day_start_us: int
    day_end_us: int
    kinds: Tuple[str, ...] = KINDS
    gap_us: int = 30 * 60_000_000
    max_events_per_user: int = 0
    max_session_length: int = 0
    eval_split: str = "time"
    eval_hours: float = 3.0
    eval_fraction: float = 0.1
    seed: int = 0
    subsample: float = 1e-3
    window: int = 5
    negatives: int = 4
    same_region_share: float = 0.5
    pairs_per_record: int = 1024
    max_pairs: int = 200_000_000
    list_size: int = 100
    label_window_us: int = 30 * 60_000_000
    max_rows_per_shard: int = 1_000_000
    target_bytes: int = 128 << 20

    @property
    def boundary_us(self) -> int:
        """Start of the eval hours: the day's end minus --eval_hours of elapsed time."""
        return split_boundary_us(self.day_end_us, "time", self.eval_hours)

    def check(self) -> "ExampleParams":
        problems = []
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds or len(set(self.kinds)) != len(self.kinds):
            problems.append(f"--example_kinds={','.join(self.kinds)!r}: give each of "
                            f"{', '.join(KINDS)} at most once, at least one")
        if self.eval_split not in ("time", "user_hash"):
            problems.append(f"--eval_split={self.eval_split!r} must be time or user_hash")
        if self.eval_split == "time" and not \
                self.day_start_us < self.boundary_us <= self.day_end_us:
            problems.append(f"--eval_hours={self.eval_hours} must be > 0 and shorter than the "
                            "day")
        if not 0 < self.eval_fraction < 1:
            problems.append(f"--eval_fraction={self.eval_fraction} must be in (0, 1)")
        if not (self.subsample > 0 and math.isfinite(self.subsample)):
            problems.append(f"--skipgram_subsample={self.subsample} must be > 0")
        if self.window < 1 or self.pairs_per_record < 1 or self.list_size < 1:
            problems.append("--skipgram_window, --skipgram_pairs_per_record and "
                            "--ranking_list_size must be >= 1")
        if self.negatives < 0 or self.max_pairs < 0:
            problems.append("--skipgram_negatives and --skipgram_max_pairs must be >= 0")
        if not 0 <= self.same_region_share <= 1:
            problems.append(f"--skipgram_same_region_negatives={self.same_region_share} must "
                            "be in [0, 1]")
        if self.label_window_us <= 0:
            problems.append("--ranking_label_minutes must be > 0")
        if problems:
            raise ValueError("; ".join(problems))
        return self
