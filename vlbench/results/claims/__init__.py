"""The claims page: claims of the literature this benchmark can test, each with a verdict from the records.

:func:`build_claims` computes every claim from run records (and continual-learning summaries) and gives
each row and claim its verdict (Holm-corrected over the page, :mod:`vlbench.results.claims.model`);
:mod:`vlbench.results.claims.render` writes the Markdown page and the leaderboard's HTML section.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from vlbench.results.claims.common import Options
from vlbench.results.claims.image_claims import joint_beats_text, vmt_claims
from vlbench.results.claims.model import NOT_SUPPORTED, NOT_TESTED, SUPPORTED, Claim, Row, decide, holm
from vlbench.results.claims.peft_claim import peft_keeps_gain
from vlbench.results.claims.protocol_claims import (pretraining_sample_efficiency, prompting_zero_shot,
                                                    replay_prevents_forgetting)

__all__ = ["Options", "Claim", "Row", "RecordSet", "ClaimsPage", "build_claims", "record_sets", "holm",
           "SUPPORTED", "NOT_SUPPORTED", "NOT_TESTED"]


@dataclass
class RecordSet:
    """One folder of records: how many, and the schema versions and code commits they carry."""

    folder: str
    records: int = 0
    summaries: int = 0
    schemas: dict[str, int] = field(default_factory=dict)
    commits: dict[str, int] = field(default_factory=dict)


@dataclass
class ClaimsPage:
    """The claims with their verdicts, the record sets they come from, and the command that made the page."""

    claims: list[Claim]
    sets: list[RecordSet]
    command: str
    options: Options


def _under(path: Optional[str], folder: str) -> bool:
    if not path:
        return False
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
    except ValueError:
        return False
    return True


def record_sets(folders: Sequence[str], records: Iterable[dict[str, Any]],
                summaries: Iterable[dict[str, Any]] = ()) -> list[RecordSet]:
    """Per folder: its records' count, schema versions and git commits (12 characters, ``-dirty`` kept)."""
    records, summaries = list(records), list(summaries)
    out = []
    for folder in folders:
        mine = [r for r in records if _under(r.get("_path"), folder)]
        commits = Counter(str(r["git_commit"])[:12] + ("-dirty" if str(r["git_commit"]).endswith("-dirty") else "")
                          if r.get("git_commit") else "not recorded" for r in mine)
        out.append(RecordSet(str(folder), len(mine), sum(_under(s.get("_path"), folder) for s in summaries),
                             dict(sorted(Counter(str(r.get("schema", "?")) for r in mine).items())),
                             dict(sorted(commits.items()))))
    return out


def build_claims(records: Iterable[dict[str, Any]], summaries: Iterable[dict[str, Any]] = (),
                 options: Optional[Options] = None) -> list[Claim]:
    """Every claim computed from the records, each row and claim given its verdict."""
    options = options or Options()
    records, summaries = list(records), list(summaries)
    claims = [joint_beats_text(records, options), *vmt_claims(records, options), peft_keeps_gain(records, options),
              pretraining_sample_efficiency(records, options), prompting_zero_shot(records, options),
              replay_prevents_forgetting(records, summaries, options)]
    decide(claims, options.alpha)
    return claims
