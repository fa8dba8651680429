"""Records -> table rows: one row per (task, dataset, baseline, config hash, metric), never mixing configs.

A row aggregates the seeds of one config hash only. Rows of the same baseline with different hashes
stay separate and carry ``config``: the fields in which their configs differ. Failed runs give failed
rows. Each row compares itself with the task's reference baseline (same test items) by a paired test
over per-item values averaged over seeds (see :mod:`vlbench.results.stats`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional


from vlbench.results.corpus import CorpusSeeds, corpus_seed_item_test, paired_corpus_test
from vlbench.results.flips import FLIP_FIELDS, flip_fields
from vlbench.results.robustness import ROBUSTNESS_FIELDS, robustness_fields
from vlbench.results.seedarrays import seed_arrays
from vlbench.results.seeditem import seed_item_test
from vlbench.results.stats import paired_test, summarize
from vlbench.specs import COSMETIC_FIELDS, TrainingConfig

__all__ = ["Table", "aggregate", "comparable_config", "initialisation", "MIN_SEEDS", "EMAP_FIELDS", "LEAKAGE_FIELDS"]

MIN_SEEDS = 3  # below this a row is marked: its spread is not estimated well enough for a finding


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def comparable_config(record: dict[str, Any]) -> dict[str, Any]:
    """The flattened fields a record's config hash covers (cosmetic fields out, precision as actually used)."""
    config = dict(record.get("config") or {})
    for section, names in COSMETIC_FIELDS.items():
        if isinstance(config.get(section), dict):
            config[section] = {k: v for k, v in config[section].items() if k not in names}
    if isinstance(config.get("training"), dict):
        config["training"] = {k: v for k, v in config["training"].items() if k not in TrainingConfig.unhashed}
    flat: dict[str, Any] = {}
    _flatten("", config, flat)
    used = (record.get("training") or {}).get("precision")
    if used:
        flat["training.precision"] = used
    flat["data.fingerprint"] = (record.get("data") or {}).get("fingerprint")
    tokenizer = record.get("tokenizer") or {}
    flat["tokenizer"] = tokenizer.get("source") if tokenizer.get("used") else None
    return flat


def initialisation(baseline: dict[str, Any]) -> str:
    """``pretrained`` when a baseline starts from pretrained weights (text model, image part or backbone), else ``scratch``.

    A from-scratch twin (``config.scratch: true``) names the pretrained weights for their architecture only.
    """
    config = baseline.get("config") or {}
    if config.get("scratch"):
        return "scratch"
    if baseline.get("pretrained") or config.get("image_part") or config.get("backbone_weights"):
        return "pretrained"
    return "scratch"


def _fmt(value: Any) -> str:
    return value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)


def _differences(identities: list[dict[str, Any]]) -> list[list[str]]:
    """For each identity, ``key=value`` of the fields that are not the same in all of them."""
    keys = sorted(set().union(*identities))
    varying = [k for k in keys if len({_fmt(i.get(k)) for i in identities}) > 1]
    return [[f"{k}={_fmt(i.get(k))}" for k in varying] for i in identities]


def _version_key(record: dict[str, Any]) -> str:
    v = record.get("versions") or {}
    parts = [f"{name} {v[name]}" for name in ("vlbench", "torch", "transformers") if name in v]
    if record.get("git_commit"):
        commit = str(record["git_commit"])
        parts.append(f"git {commit[:12]}" + ("-dirty" if commit.endswith("-dirty") else ""))
    return ", ".join(parts) or "unknown versions"


@dataclass
class _Group:
    task: str
    dataset: str
    baseline: str
    config_hash: str
    ok: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    config: str = ""
    config_fields: list[str] = field(default_factory=list)
    per_seed: dict[str, Any] = field(default_factory=dict)  # metric -> (every seed's per-item values, why not)

    @property
    def first(self) -> dict[str, Any]:
        return (self.ok or self.failed)[0]


@dataclass
class Table:
    """Aggregated rows plus what the reader must know: mixed versions, duplicates, untestable metrics."""

    rows: list[dict[str, Any]]
    versions: dict[str, int]  # version description -> number of records
    notes: list[str] = field(default_factory=list)

    @property
    def mixes_versions(self) -> bool:
        """True when the records come from more than one package/code version."""
        return len(self.versions) > 1


def _mean(values: Iterable[Optional[float]]) -> Optional[float]:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def _seed_arrays(group: _Group, metric: str) -> tuple[Any, str]:
    """Every seed's per-item values of ``metric`` (every seed must cover the same items), computed once."""
    if metric not in group.per_seed:
        group.per_seed[metric] = seed_arrays(group.ok, metric)
    return group.per_seed[metric]


EMAP_FIELDS = ("emap_items", "emap_model", "emap", "emap_gap", "emap_gap_ci_low", "emap_gap_ci_high", "emap_seeds")


def _emap_fields(records: list[dict[str, Any]], metric: Optional[str]) -> dict[str, Any]:
    """The seeds' EMAP blocks of ``metric``: mean model and EMAP scores, the gap's mean and t-interval over seeds."""
    blocks = [r["emap"] for r in records if isinstance(r.get("emap"), dict) and r["emap"].get("metric") == metric
              and metric is not None and isinstance(r["emap"].get("gap"), (int, float))]
    if not blocks:
        return dict.fromkeys(EMAP_FIELDS)
    gap = summarize([b["gap"] for b in blocks])
    sizes = sorted({b.get("items") for b in blocks if isinstance(b.get("items"), int)})
    return {"emap_items": sizes[0] if len(sizes) == 1 else None, "emap_model": _mean(b.get("model") for b in blocks),
            "emap": _mean(b.get("emap") for b in blocks), "emap_gap": gap.mean, "emap_gap_ci_low": gap.ci_low,
            "emap_gap_ci_high": gap.ci_high, "emap_seeds": gap.n}


LEAKAGE_FIELDS = ("text_only", "question_only_prior", "question_only_ceiling", "leakage", "above_text_ceiling")


def _leakage_fields(records: list[dict[str, Any]], metric: str, mean: Optional[float]) -> dict[str, Any]:
    """For a model that reads only the question: its score minus the data's prior, and whether it beats the
    data's text-only ceiling (the best answer per exact question string, chosen on test), which it cannot
    honestly do (MMStar's "leakage"). The bounds come from the records' ``data.question_only``."""
    text_only = bool(records) and all(r.get("modalities") == ["text"] for r in records)
    bounds = [((r.get("data") or {}).get("question_only") or {}) for r in records]
    bounds = [b for b in bounds if b.get("metric") == metric]
    prior = _mean(b.get("prior") for b in bounds) if bounds else None
    ceiling = _mean(b.get("question_oracle") for b in bounds) if bounds else None
    leakage = mean - prior if text_only and mean is not None and prior is not None else None
    above = (mean > ceiling + 1e-9) if text_only and mean is not None and ceiling is not None else None
    return {"text_only": text_only, "question_only_prior": prior, "question_only_ceiling": ceiling,
            "leakage": leakage, "above_text_ceiling": above}


def _memory_mb(records: list[dict[str, Any]]) -> Optional[float]:
    # only the CUDA allocator's peak is the run's memory; process RSS on CPU includes every library loaded
    peaks = [(r.get("memory") or {}).get("peak_bytes") for r in records
             if (r.get("memory") or {}).get("kind") == "cuda_max_allocated"]
    peaks = [p for p in peaks if isinstance(p, (int, float))]
    return max(peaks) / 2**20 if peaks else None


def _groups(records: Iterable[dict[str, Any]]) -> list[_Group]:
    groups: dict[tuple[str, str, str, str], _Group] = {}
    for rec in records:
        key = (rec["task"], rec["dataset"], rec["baseline"], rec["config_hash"])
        group = groups.setdefault(key, _Group(*key))
        (group.ok if rec.get("status", "ok") == "ok" else group.failed).append(rec)
    by_baseline: dict[tuple[str, str, str], list[_Group]] = defaultdict(list)
    for group in groups.values():
        group.ok.sort(key=lambda r: r["seed"])
        group.failed.sort(key=lambda r: r["seed"])
        by_baseline[(group.task, group.dataset, group.baseline)].append(group)
    for same in by_baseline.values():
        if len(same) > 1:
            for group, diff in zip(same, _differences([comparable_config(g.first) for g in same])):
                group.config_fields = diff or [f"config_hash={group.config_hash}"]
                group.config = ", ".join(group.config_fields)
    return sorted(groups.values(), key=lambda g: (g.task, g.dataset, g.baseline, g.config))


def _reference_for(group: _Group, candidates: list[_Group]) -> Optional[_Group]:
    """The reference baseline's group scored on the same data; the one trained like ``group`` when several."""
    fingerprint = comparable_config(group.first).get("data.fingerprint")
    same_data = [c for c in candidates if c.ok and comparable_config(c.first).get("data.fingerprint") == fingerprint]
    if len(same_data) <= 1:
        return same_data[0] if same_data else None
    mine = {k: v for k, v in comparable_config(group.first).items() if k.startswith("training.")}

    def likeness(c: _Group) -> tuple[int, int]:
        theirs = comparable_config(c.first)
        return sum(theirs.get(k) == v for k, v in mine.items()), len(c.ok)

    return max(same_data, key=likeness)


def aggregate(records: Iterable[dict[str, Any]], *, metric: Optional[str] = None, rounds: int = 10000,
              reference: Optional[str] = None) -> Table:
    """Rows per (task, dataset, baseline, config, metric) with mean, std, CI, n, Δ vs reference and p-value.

    ``reference`` names the baseline every row is compared with; default each task's ``reference_baseline``.
    """
    records = list(records)
    groups = _groups(records)
    by_task: dict[tuple[str, str, str], list[_Group]] = defaultdict(list)
    for g in groups:
        by_task[(g.task, g.dataset, g.baseline)].append(g)
    versions = Counter(_version_key(r) for r in records)
    notes: list[str] = []
    batch_dependent = sorted({f"{r['baseline']} seed {r['seed']}" for r in records
                              if (r.get("eval_invariance") or {}).get("invariant") is False})
    if batch_dependent:  # recorded by --check-eval-invariance: these scores change with the evaluation batch
        notes.append(f"warning: the test scores of {', '.join(batch_dependent)} changed when scored one example per "
                     "batch (record field eval_invariance).")
    rows: list[dict[str, Any]] = []
    for group in groups:
        rec0 = group.first
        task_cfg = (rec0.get("config") or {}).get("task") or {}
        primary = rec0.get("primary_metric") or task_cfg.get("primary_metric")
        row_reference = reference or task_cfg.get("reference_baseline")
        ref_group = None
        if row_reference and row_reference != group.baseline:
            ref_group = _reference_for(group, by_task.get((group.task, group.dataset, row_reference), []))
        tested = metric or primary
        metrics = list(dict.fromkeys(m for r in group.ok for m in r["test"]["metrics"]))
        if metric is not None:
            metrics = [m for m in metrics if m == metric]
        base = {
            "task": group.task, "dataset": group.dataset, "baseline": group.baseline,
            "config": group.config, "config_fields": group.config_fields, "config_hash": group.config_hash,
            "family": ((rec0.get("config") or {}).get("baseline") or {}).get("family", ""),
            "init": initialisation((rec0.get("config") or {}).get("baseline") or {}),
            "status": "ok" if group.ok and not group.failed else "partial" if group.ok else "failed",
            "seeds": [r["seed"] for r in group.ok],
            "failed_seeds": [r["seed"] for r in group.failed],
            "failure": ((group.failed[0].get("failure") or {}).get("reason") if group.failed else None),
            "trainable_params": (rec0.get("parameters") or {}).get("trainable"),
            "total_params": (rec0.get("parameters") or {}).get("total"),
            "train_seconds": _mean((r.get("timing") or {}).get("train_seconds") for r in group.ok),
            "eval_seconds": _mean((r.get("timing") or {}).get("eval_seconds") for r in group.ok),
            "gpu_memory_mb": _memory_mb(group.ok),
            "reference": row_reference,
            "versions": sorted({_version_key(r) for r in group.ok + group.failed}),
        }
        if not group.ok:
            rows.append({**base, "metric": metric or primary, "primary": True, "n": 0, "mean": None, "std": None,
                         "ci_low": None, "ci_high": None, "delta_vs_reference": None, "p_value": None,
                         "p_value_items": None, "delta_ci_low": None, "delta_ci_high": None, "test": "failed run",
                         "image_reliance_blank": None, "image_reliance_shuffled": None,
                         **dict.fromkeys(EMAP_FIELDS), **dict.fromkeys(LEAKAGE_FIELDS), **dict.fromkeys(FLIP_FIELDS),
                         **dict.fromkeys(ROBUSTNESS_FIELDS)})
            continue
        for name in metrics:
            summary = summarize([r["test"]["metrics"].get(name) for r in group.ok])
            row = {**base, "metric": name, "primary": name == primary, "n": summary.n, "mean": summary.mean,
                   "std": summary.std, "ci_low": summary.ci_low, "ci_high": summary.ci_high,
                   "delta_vs_reference": None, "p_value": None, "p_value_items": None, "delta_ci_low": None,
                   "delta_ci_high": None, "test": None}
            ablations = [r.get("ablation") for r in group.ok if (r.get("ablation") or {}).get("metric") == name]
            row["image_reliance_blank"] = _mean(a["real"] - a["blank"] for a in ablations
                                                if a.get("real") is not None and a.get("blank") is not None)
            row["image_reliance_shuffled"] = _mean(a["real"] - a["shuffled"] for a in ablations
                                                   if a.get("real") is not None and a.get("shuffled") is not None)
            row.update(_emap_fields(group.ok, name))
            row.update(flip_fields(group.ok, name))
            row.update(robustness_fields(group.ok, name))
            row.update(_leakage_fields(group.ok, name, summary.mean))
            if ref_group is not None:
                ref_summary = summarize([r["test"]["metrics"].get(name) for r in ref_group.ok])
                if summary.mean is not None and ref_summary.mean is not None:
                    row["delta_vs_reference"] = summary.mean - ref_summary.mean
                if name == tested:
                    row["test"] = _compare(group, ref_group, name, rounds, row)
            elif row_reference and row_reference != group.baseline and name == tested:
                row["test"] = f"no {row_reference} runs on the same data to compare with"
            rows.append(row)
    return Table(rows, dict(versions), notes)


def _compare(group: _Group, ref: _Group, metric: str, rounds: int, row: dict[str, Any]) -> str:
    """Fill p_value (seeds and items), its interval, and p_value_items (items only); return how it was tested."""
    mine, why = _seed_arrays(group, metric)
    theirs, why_ref = _seed_arrays(ref, metric)
    if mine is None or theirs is None:
        return f"not tested: {why or why_ref}"
    if isinstance(mine, CorpusSeeds):
        corpus_rounds = min(rounds, 1000)  # every round recomputes the corpus metric for every seed
        outcome = paired_corpus_test(mine.pooled(), theirs.pooled(), rounds=corpus_rounds,
                                     bootstrap_rounds=corpus_rounds)
        if outcome is None:
            return "not tested: the two baselines were scored on different test items"
        row["p_value_items"] = outcome[1]
        both = corpus_seed_item_test(mine, theirs, rounds=corpus_rounds)
        items_only = (f"p_value_items: paired approximate randomization ({corpus_rounds} rounds) with corpus "
                      f"{metric} recomputed from sentence statistics averaged over seeds, over {outcome[4]} items")
    else:
        if set(mine) != set(theirs) or any(mine[g][0] != theirs[g][0] for g in mine):
            return "not tested: the two baselines were scored on different test items"
        groups = sorted(mine)
        averaged = [{g: dict(zip(side[g][0], side[g][1].mean(axis=0))) for g in groups} for side in (mine, theirs)]
        result = paired_test(*averaged, rounds=rounds, bootstrap_rounds=0)
        row["p_value_items"] = result.p_value if result else None
        both = seed_item_test([mine[g][1] for g in groups], [theirs[g][1] for g in groups])
        items_only = (f"p_value_items: paired approximate randomization ({rounds} rounds) over "
                      f"{sum(len(mine[g][0]) for g in groups)} items, seeds averaged per item")
    if both is None:
        return f"p_value: not tested, needs at least 2 seeds of each baseline; {items_only}"
    row.update(p_value=both.p_value, delta_ci_low=both.ci_low, delta_ci_high=both.ci_high)
    return (f"p_value and delta CI: {both.method}, {both.n_seeds[0]} vs {both.n_seeds[1]} seeds, "
            f"{both.n_items} items, df {both.df:.1f}; {items_only}")
