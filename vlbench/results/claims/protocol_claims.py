"""Claims resting on protocol records: pretraining and sample efficiency, zero-shot prompting, replay."""

from __future__ import annotations

import shlex
from collections import defaultdict
from typing import Any, Optional

import numpy as np

from vlbench.results.aggregate import initialisation
from vlbench.results.claims.commands import continual_command, run_command
from vlbench.results.claims.common import Options, test_text, versus
from vlbench.results.claims.model import Claim, Row
from vlbench.results.claims.systems import System, best_match, systems, train_subset
from vlbench.results.seeditem import combine
from vlbench.results.stats import summarize

__all__ = ["pretraining_sample_efficiency", "prompting_zero_shot", "replay_prevents_forgetting"]


def _init(system: System) -> str:
    return initialisation(system.field("config", "baseline") or {})


def _fraction(system: System) -> Optional[float]:
    subset = train_subset(system.first) or {}
    return subset.get("fraction")


def _twins(pool: list[System]) -> list[tuple[System, System]]:
    """(pretrained, scratch twin) pairs: same data and fraction, same model and settings but ``scratch``."""
    pairs = []
    for p in [s for s in pool if _init(s) == "pretrained"]:
        settings = {k: v for k, v in (p.field("config", "baseline", "config") or {}).items() if k != "scratch"}
        twins = [s for s in pool if _init(s) == "scratch" and _fraction(s) == _fraction(p)
                 and s.field("config", "baseline", "model") == p.field("config", "baseline", "model")
                 and {k: v for k, v in (s.field("config", "baseline", "config") or {}).items() if k != "scratch"}
                 == settings]
        twin = best_match(p, twins)
        if twin is not None:
            pairs.append((p, twin))
    return pairs


def _shipped_twins(task: str) -> list[tuple[str, str]]:
    """Shipped (pretrained, from-scratch twin) baseline names that list ``task``."""
    from vlbench.errors import VLBenchError
    from vlbench.specs import available_specs, load_baseline_spec

    specs = {}
    for name in available_specs("baselines"):
        try:
            specs[name] = load_baseline_spec(name).model_dump()
        except (VLBenchError, OSError, ValueError):
            continue
    out = []
    for name, spec in sorted(specs.items()):
        config = spec.get("config") or {}
        if not config.get("scratch") or task not in (spec.get("tasks") or []):
            continue
        rest = {k: v for k, v in config.items() if k != "scratch"}
        for other, theirs in sorted(specs.items()):
            if other != name and theirs.get("model") == spec.get("model") and theirs.get("config") == rest \
                    and initialisation(theirs) == "pretrained":
                out.append((other, name))
    return out


def pretraining_sample_efficiency(records: list[dict[str, Any]], options: Options) -> Claim:
    """Claim 4: a pretrained model against its from-scratch twin at the smallest training fraction both ran."""
    claim = Claim(
        "4", "Pretraining improves sample efficiency",
        "Started from pretrained weights, a model scores better from few labelled examples than the same model "
        "trained from scratch on them.",
        "Erhan et al. 2010 (JMLR), \"Why does unsupervised pre-training help deep learning?\"; He, Girshick & "
        "Dollár 2019 (ICCV), \"Rethinking ImageNet Pre-training\" (pretraining matters most with little data)",
        "Data-efficiency records (--train-fraction) of a pretrained baseline and its from-scratch twin (same model "
        "and settings, random weights): at the smallest fraction both ran, the pretrained one is above its twin "
        "(Holm-corrected p < alpha); the claim needs every such pair.",
        "every")
    pool = systems(records, keep=lambda r: (train_subset(r) or {}).get("fraction") is not None
                   and not r.get("continual"))
    smallest: dict[tuple[str, str, str, str], tuple[System, System]] = {}
    for p, s in _twins(pool):
        key = (p.task, p.dataset, p.baseline, s.baseline)
        if key not in smallest or (_fraction(p) or 1) < (_fraction(smallest[key][0]) or 1):
            smallest[key] = (p, s)
    for key in sorted(smallest):
        p, s = smallest[key]
        row, _ = versus(p, s)
        row.comparison = f"{p.baseline} vs {s.baseline} at fraction {_fraction(p):g} ({p.task}/{p.dataset})"
        claim.rows.append(row)
    if not claim.rows:
        held = sorted({f"{s.baseline} ({_init(s)})" for s in pool})
        claim.missing = ("no data-efficiency records of a pretrained baseline beside its from-scratch twin"
                         + (f"; the efficiency records hold {', '.join(held)}." if held else
                            "; there are no data-efficiency (--train-fraction) records."))
        claim.to_make = ["SECTIONS=efficiency bash results/pretrained.sh  # the published pretrained track"] \
            + _efficiency_commands(pool)
    return claim


def _efficiency_commands(pool: list[System]) -> list[str]:
    """The existing efficiency records' command with each shipped twin pair of their task in place of the baselines."""
    fractions = sorted({f for f in (_fraction(s) for s in pool) if f is not None}) or [0.01, 0.1, 1.0]
    task = pool[0].task if pool else "vqa-pretrained"  # the embedded task whose twins are shipped
    template = shlex.split(run_command(pool[0].records)) if pool else ["vlbench", "run", "--task", task]
    for flag in ("--baseline", "--train-fraction"):
        while flag in template:
            at = template.index(flag)
            del template[at:at + 2]
    if "--seeds" not in template:
        template += ["--seeds", "0,1,2"]
    out = []
    for pretrained, scratch in _shipped_twins(task):
        at = template.index("--task") + 2
        words = template[:at] + ["--baseline", pretrained, "--baseline", scratch] + template[at:]
        out.append(shlex.join(words + ["--train-fraction", ",".join(f"{f:g}" for f in fractions)]))
    return out or [f"vlbench run --task {task} --baseline <pretrained> --baseline <its scratch twin> "
                   f"--train-fraction {','.join(f'{f:g}' for f in fractions)} --seeds 0,1,2"]


def _zero_shot(record: dict[str, Any]) -> bool:
    baseline = (record.get("config") or {}).get("baseline") or {}
    return (baseline.get("model") == "prompted" and not (baseline.get("config") or {}).get("shots")
            and train_subset(record) is None and not record.get("continual"))


def prompting_zero_shot(records: list[dict[str, Any]], options: Options) -> Claim:
    """Claim 5: each prompted model with no example in its prompt against the task's floor (the answer prior)."""
    claim = Claim(
        "5", "Prompting a pretrained language model answers zero-shot",
        "Given an image and a question and no solved example, a prompted pretrained language model answers better "
        "than the answer prior.",
        "Brown et al. 2020 (NeurIPS), \"Language Models are Few-Shot Learners\"; Tsimpoukelli et al. 2021 "
        "(NeurIPS), \"Multimodal Few-Shot Learning with Frozen Language Models\"",
        "Every prompted baseline run with 0 shots (no task training) is tested against the task's floor, the "
        "baseline that reads neither text nor image, on the same data; supported when at least one is above it "
        "(Holm-corrected p < alpha). The row names the weights the prompted model used.",
        "any")
    prompted = systems(records, keep=_zero_shot)
    floors = [s for s in systems(records) if s.modalities == frozenset()]
    for system in prompted:
        floor = best_match(system, floors)
        if floor is None:
            claim.rows.append(Row(f"{system.baseline} k=0 ({system.task}/{system.dataset})",
                                  why_untested="no floor baseline (reads neither text nor image) on the same data"))
            continue
        row, _ = versus(system, floor)
        row.comparison = f"{system.baseline} k=0 vs {floor.baseline} ({system.task}/{system.dataset})"
        row.notes.append(f"weights: {system.field('config', 'baseline', 'pretrained')}")
        claim.rows.append(row)
    if not prompted:
        claim.missing = "no records of a prompted baseline run with 0 shots."
        claim.to_make = ["PROTOCOLS=prompted bash results/protocols.sh"]
    return claim


def _forgetting(summaries: list[dict[str, Any]]) -> dict[tuple[str, str, str, str, str], list[dict[str, Any]]]:
    """(sequence, task, dataset, baseline, strategy) -> summaries of the config with the most seeds."""
    by_config: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for s in summaries:
        if s.get("status", "ok") == "ok" and isinstance((s.get("metrics") or {}).get("forgetting"), (int, float)):
            by_config[(s["sequence"], s["task"], s["dataset"], s["baseline"], s["strategy"], s["config_hash"])].append(s)
    out: dict[tuple[str, str, str, str, str], list[dict[str, Any]]] = {}
    for key in sorted(by_config):
        items = sorted(by_config[key], key=lambda s: s["seed"])
        if len(items) > len(out.get(key[:5], [])):
            out[key[:5]] = items
    return out


def replay_prevents_forgetting(records: list[dict[str, Any]], summaries: list[dict[str, Any]],
                               options: Options) -> Claim:
    """Claim 6: forgetting under naive sequential fine-tuning minus forgetting under replay, per baseline."""
    claim = Claim(
        "6", "Replay prevents forgetting",
        "Replaying a small memory of earlier stages' examples forgets less than naive sequential fine-tuning.",
        "Rebuffi et al. 2017 (CVPR), iCaRL; Rolnick et al. 2019 (NeurIPS), \"Experience Replay for Continual "
        "Learning\"; Chaudhry et al. 2019, \"On Tiny Episodic Memories in Continual Learning\"",
        "Continual-learning summaries of the same sequence and baseline under the naive and replay strategies: "
        "forgetting (mean drop from each stage's best score to its final score) with naive minus with replay, "
        "by Welch's t-test over seeds (the seed-and-item test with no item part: forgetting is one number per "
        "seed); supported when replay forgets less for every baseline (Holm-corrected p < alpha). Whether replay's "
        "own forgetting reaches 0 is shown beside it.",
        "every")
    groups = _forgetting(summaries)
    for key in sorted(k for k in groups if k[4] == "naive"):
        replay = groups.get(key[:4] + ("replay",))
        if replay is None:
            continue
        naive = groups[key]
        a = np.array([s["metrics"]["forgetting"] for s in naive], dtype=np.float64)
        b = np.array([s["metrics"]["forgetting"] for s in replay], dtype=np.float64)
        row = Row(f"{key[3]}: naive vs replay forgetting ({key[0]}, {key[1]}/{key[2]})", unit="forgetting points",
                  rests_on=[_cite(items) for items in (naive, replay)],
                  commands=[continual_command(items, _stage_records(records, items)) for items in (naive, replay)])
        test = combine(float(a.mean() - b.mean()), a, b, [], [], [], 0)
        if test is None:
            row.why_untested = "needs at least 2 seeds of each strategy"
        else:
            row.effect, row.ci, row.p_value, row.test = test.delta, (test.ci_low, test.ci_high), test.p_value, \
                "Welch t-test over seeds (" + test_text(test).split("; ", 1)[1] + ")"
            kept = summarize(list(b))
            row.notes.append(f"forgetting with naive {a.mean():.2f}, with replay {kept.mean:.2f}"
                             + (f" [{kept.ci_low:.2f}, {kept.ci_high:.2f}]" if kept.ci_low is not None else ""))
        claim.rows.append(row)
    if not claim.rows:
        present = sorted({f"{k[3]} {k[4]}" for k in groups})
        claim.missing = ("no continual-learning summaries with both the naive and the replay strategy"
                         + (f"; found: {', '.join(present)}." if present else "."))
        claim.to_make = ["vlbench continual --sequence shapes-families --baseline film --strategy naive "
                         "--strategy replay --seeds 0,1,2 --epochs 2 --results-dir results/protocols/continual"]
    return claim


def _cite(summaries: list[dict[str, Any]]) -> str:
    first = summaries[0]
    seeds = ", ".join(str(s["seed"]) for s in summaries)
    return (f"{first['sequence']} {first['baseline']} {first['strategy']}: seeds {seeds}; config "
            f"{str(first['config_hash'])[:12]}; {len(first.get('stages') or [])} stages")


def _stage_records(records: list[dict[str, Any]], summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    first = summaries[0]
    return [r for r in records if (r.get("continual") or {}).get("sequence") == first["sequence"]
            and (r.get("continual") or {}).get("strategy") == first["strategy"] and r.get("baseline") == first["baseline"]
            and r.get("task") == first["task"]]
