"""Claims about what the image adds: joint vs text-only VQA, and visual MT with full or masked sources."""

from __future__ import annotations

from typing import Any, Optional

from vlbench.results.claims.common import Options, versus
from vlbench.results.claims.model import Claim, Row, tost_p
from vlbench.results.claims.systems import System, best_match, systems
from vlbench.results.sections import p_text
from vlbench.results.seeditem import SeedItemTest

__all__ = ["joint_beats_text", "vmt_claims"]

JOINT = frozenset({"text", "image"})


def _task_type(system: System) -> Optional[str]:
    return system.field("config", "task", "type")


def _trained_joint(system: System) -> bool:
    """Reads text and image, trains every weight it has (no PEFT), and is not a prompted model."""
    return (system.modalities == JOINT and not system.field("config", "baseline", "peft")
            and (system.trainable or 0) > 0 and system.field("config", "baseline", "model") != "prompted")


def _reference(system: System, pool: list[System]) -> Optional[System]:
    name = system.field("config", "task", "reference_baseline")
    return best_match(system, [s for s in pool if s.baseline == name]) if name else None


def _rows(joint: list[System], pool: list[System]) -> list[tuple[Row, Optional[SeedItemTest]]]:
    """Each joint model against its task's text-only reference: the row and its test."""
    rows: list[tuple[Row, Optional[SeedItemTest]]] = []
    for system in joint:
        reference = _reference(system, pool)
        if reference is None:
            name = system.field("config", "task", "reference_baseline") or "a reference baseline"
            rows.append((Row(f"{system.baseline} vs {name} ({system.task}/{system.dataset})",
                             why_untested=f"no {name} records on the same data"), None))
        elif reference.modalities != frozenset({"text"}):
            rows.append((Row(f"{system.baseline} vs {reference.baseline} ({system.task}/{system.dataset})",
                             why_untested=f"the reference {reference.baseline} is not text-only"), None))
        else:
            rows.append(versus(system, reference))
    return rows


def joint_beats_text(records: list[dict[str, Any]], options: Options) -> Claim:
    """Claim 1: each fully trained joint VQA model against the task's text-only reference, Holm-corrected."""
    claim = Claim(
        "1", "Joint training beats text-only on VQA",
        "A model trained on the image and the question answers VQA better than the same task's text-only model.",
        "Antol et al. 2015 (ICCV), \"VQA: Visual Question Answering\" (question-only vs question+image models); "
        "Goyal et al. 2017 (CVPR), \"Making the V in VQA Matter\"",
        "Every fully trained joint baseline (reads text and image, no PEFT, not prompted) is tested against the "
        "task's reference baseline when that is text-only; supported when at least one joint model is above it "
        "(Holm-corrected over the page, so picking the best of several is paid for).",
        "any")
    pool = systems(records)
    joint = [s for s in pool if _task_type(s) == "vqa" and _trained_joint(s)]
    claim.rows = [row for row, _ in _rows(joint, pool)]
    if not joint:
        claim.missing = "no VQA records (task type vqa) of a fully trained joint model."
        claim.to_make = ["vlbench run --task vqa --all-baselines --seeds 0,1,2 --epochs 5 --set training.patience=0 "
                         "--results-dir results/runs"]
    return claim


def _vmt(records: list[dict[str, Any]], masked: bool) -> tuple[list[System], list[System]]:
    pool = systems(records)
    chosen = [s for s in pool if _task_type(s) == "vmt"
              and (s.field("config", "task", "options", "source_field") == "source_masked") == masked]
    return [s for s in chosen if _trained_joint(s)], pool


def vmt_claims(records: list[dict[str, Any]], options: Options) -> list[Claim]:
    """Claims 2a (full sources: the image adds nothing, by equivalence) and 2b (masked sources: it helps)."""
    source = ("Caglayan et al. 2019 (NAACL), \"Probing the Need for Visual Context in Multimodal Machine "
              "Translation\"")
    full = Claim(
        "2a", "The image adds nothing to full-source visual MT",
        "With complete source sentences, a multimodal translation model scores the same as its text-only twin.",
        source,
        f"Equivalence, not a missing difference: supported when two one-sided tests (TOST) show the joint model "
        f"within ±{options.margin:g} points of the text-only reference (Holm-corrected TOST p < {options.alpha:g}). "
        "A non-significant difference alone is reported as \"no difference detected\", never as equivalence.",
        "every")
    masked = Claim(
        "2b", "The image helps visual MT when entities are masked",
        "When the source's entity words are masked, the multimodal model translates better than the text-only one.",
        source,
        "Every joint model on the entity-masked task is tested against the task's text-only reference; supported "
        "when at least one is above it (Holm-corrected p < alpha).",
        "any")
    joint, pool = _vmt(records, masked=False)
    for row, test in _rows(joint, pool):
        full.rows.append(row)
        if test is None:
            continue
        row.equivalence = True
        row.p_value = tost_p(test, options.margin)
        row.test = f"TOST of |Δ| < {options.margin:g} on the {row.test} (difference test p = {p_text(test.p_value)})"
        if row.ci is not None and row.ci[0] == row.ci[1]:
            row.notes.append("every seed of both models scored the same on every test item (zero variance): "
                             "the two are indistinguishable here, which may be a ceiling of the data rather than "
                             "evidence about the image.")
    if not joint:
        full.missing = "no full-source visual MT records (task type vmt, source_field source) of a joint model."
        full.to_make = ["TASKS=vmt bash results/make.sh"]
    joint, pool = _vmt(records, masked=True)
    masked.rows = [row for row, _ in _rows(joint, pool)]
    if not joint:
        masked.missing = "no entity-masked visual MT records (task type vmt, source_field source_masked)."
        masked.to_make = ["TASKS=vmt-masked bash results/make.sh"]
    return [full, masked]
