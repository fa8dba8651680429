"""``vlbench score``: score a predictions file made by anything, with the same metric code as ``run``.

    vlbench score --task vqa --predictions results.json --references v2_mscoco_val2014_annotations.json
    vlbench score --task captioning -p captions_val2014_results.json -r captions_val2014.json --format json
    vlbench score --task retrieval -p sim.npy -r text_to_image.json
    vlbench score --task vmt -p hyp.de -r ref1.de -r ref2.de
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Optional

import typer

from vlbench.cli.app import app, err_console, path_arg
from vlbench.errors import UnknownNameError, VLBenchError
from vlbench.registry import did_you_mean

__all__ = ["score", "TASKS", "score_files"]

TASKS = ("vqa", "captioning", "retrieval", "vmt")
FORMATS = ("rich", "json")


def _one_reference(task: str, references: list[Path]) -> Path:
    if len(references) != 1:
        raise VLBenchError(f"--task {task} takes exactly one --references file, got {len(references)}.")
    return references[0]


def _partial(pred_ids: list[Hashable], ref_ids: list[Hashable], kind: str, allow_partial: bool,
             warn: Callable[[str], None]) -> tuple[list[Hashable], Optional[dict[str, int]]]:
    """Shared ids in reference order; a mismatch raises unless --allow-partial, which warns instead."""
    from vlbench.metrics.ids import align_ids

    ids, warning = align_ids(pred_ids, ref_ids, kind=kind, allow_partial=allow_partial)
    if warning is None:
        return ids, None
    warn(warning)
    pred_set, ref_set = set(pred_ids), set(ref_ids)
    return ids, {"scored": len(ids), "missing_predictions": len(ref_set - pred_set), "unknown_predictions": len(pred_set - ref_set)}


def _score_vqa(predictions: Path, references: list[Path], allow_partial: bool, warn: Callable[[str], None], **_: Any) -> dict[str, Any]:
    from vlbench.metrics.formats import read_vqa_annotations, read_vqa_predictions
    from vlbench.metrics.vqa import vqa_evaluate

    preds = read_vqa_predictions(predictions)
    anns = read_vqa_annotations(_one_reference("vqa", references))
    ref_ids = [a["question_id"] for a in anns]
    ids, partial = _partial([p["question_id"] for p in preds], ref_ids, "question_id", allow_partial, warn)
    keep = set(ids)
    result = vqa_evaluate([p for p in preds if p["question_id"] in keep],
                          [a for a, q in zip(anns, ref_ids) if q in keep])
    out = {k: result[k] for k in ("overall", "perAnswerType", "perQuestionType")}
    out["per_example"] = result["per_question"]
    return {**out, "partial": partial} if partial else out


def _score_captioning(predictions: Path, references: list[Path], allow_partial: bool, warn: Callable[[str], None],
                      spice_dir: Optional[Path] = None, **_: Any) -> dict[str, Any]:
    from vlbench.metrics.captioning import shared_caption_scorer
    from vlbench.metrics.formats import read_coco_references, read_coco_results

    preds = read_coco_results(predictions)
    refs = read_coco_references(_one_reference("captioning", references))
    ids, partial = _partial(list(preds), list(refs), "image_id", allow_partial, warn)
    result = shared_caption_scorer(spice_dir).score({i: preds[i] for i in ids}, {i: refs[i] for i in ids})
    return {**result, "partial": partial} if partial else result


def _score_retrieval(predictions: Path, references: list[Path], **_: Any) -> dict[str, Any]:
    from vlbench.metrics.formats import read_similarity_matrix, read_text_to_image
    from vlbench.metrics.retrieval import retrieval_evaluate

    similarity = read_similarity_matrix(predictions)
    return retrieval_evaluate(similarity, read_text_to_image(_one_reference("retrieval", references)))


def _score_vmt(predictions: Path, references: list[Path], meteor: bool = False, **_: Any) -> dict[str, Any]:
    from vlbench.errors import DataError
    from vlbench.metrics.formats import read_lines
    from vlbench.metrics.translation import translation_evaluate

    hyps = read_lines(predictions, "predictions")
    streams = [read_lines(r, "references") for r in references]
    for path, stream in zip(references, streams):
        if len(stream) != len(hyps):
            raise DataError(f"references file {str(path)!r} has {len(stream)} lines but predictions file "
                            f"{str(predictions)!r} has {len(hyps)}; each needs one line per sentence.")
    return translation_evaluate(hyps, streams, meteor=meteor)


_SCORERS: dict[str, Callable[..., dict[str, Any]]] = {
    "vqa": _score_vqa, "captioning": _score_captioning, "retrieval": _score_retrieval, "vmt": _score_vmt,
}


def score_files(task: str, predictions: Path, references: list[Path], *, allow_partial: bool = False,
                spice_dir: Optional[Path] = None, meteor: bool = False,
                warn: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Score official-format files for one task; the result includes ``per_example``."""
    if task not in _SCORERS:
        raise UnknownNameError(f"Unknown task {task!r} for scoring.{did_you_mean(task, list(TASKS))} Known: {', '.join(TASKS)}.")
    if not references:
        raise VLBenchError("give at least one --references file.")
    return _SCORERS[task](predictions, references, allow_partial=allow_partial, warn=warn, spice_dir=spice_dir, meteor=meteor)


def _json_safe(value: Any) -> Any:
    """NaN/inf become null (strict JSON); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _print_rich(task: str, result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"vlbench score: {task}", show_header=True, header_style="bold", min_width=40)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if key in ("per_example", "signatures", "skipped", "partial", "BLEU_detail"):
            continue
        if isinstance(value, dict):
            for sub, v in value.items():
                table.add_row(f"{key}/{sub}", f"{v:.2f}" if isinstance(v, float) else str(v))
        elif isinstance(value, float):
            table.add_row(key, f"{value:.4f}" if task == "captioning" else f"{value:.2f}")
        else:
            table.add_row(key, str(value))
    console = Console(highlight=False)
    console.print(table)
    for name, signature in (result.get("signatures") or {}).items():
        console.print(f"{name} signature: {signature}", markup=False)
    for name, reason in (result.get("skipped") or {}).items():
        console.print(f"{name}: skipped ({reason})", markup=False)


@app.command("score")
def score(
    task: str = typer.Option(..., "--task", "-t", help="vqa | captioning | retrieval | vmt"),
    predictions: Path = typer.Option(..., "--predictions", "-p", parser=path_arg,
        help="Predictions file in the task's official format."),
    references: list[Path] = typer.Option(..., "--references", "-r",
                                          parser=path_arg,
                                              help="References file; repeat for several vmt reference files."),
    output_format: str = typer.Option("rich", "--format", "-f", help="rich (a table) or json (one object on stdout)."),
    allow_partial: bool = typer.Option(False, "--allow-partial",
                                       help="Score only ids present in both files (warns) instead of failing."),
    spice_dir: Optional[Path] = typer.Option(None, "--spice-dir",
                                             parser=path_arg,
                                                 help="Folder with Stanford CoreNLP 3.6.0 jars; enables SPICE for captioning."),
    meteor: bool = typer.Option(False, "--meteor", help="vmt: also report METEOR 1.5 (English)."),
    per_example: bool = typer.Option(False, "--per-example", help="Include per-example scores in the JSON output."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", parser=path_arg,
        help="Also write the JSON result to this file (atomically)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Score external predictions with the official metrics (same code as `vlbench run`)."""
    if output_format not in FORMATS:
        raise VLBenchError(f"--format {output_format!r}: choose rich or json.")
    if task not in TASKS:
        raise UnknownNameError(f"Unknown task {task!r} for scoring.{did_you_mean(task, list(TASKS))} Known: {', '.join(TASKS)}.")
    if output is not None and output.is_dir():  # before scoring, which can take minutes
        raise VLBenchError(f"--output {str(output)!r} is a folder; give the path of a JSON file to write.")

    def warn(message: str) -> None:
        err_console.print(f"warning: {message}", markup=False)

    if quiet or not err_console.is_terminal:
        result = score_files(task, predictions, references, allow_partial=allow_partial, spice_dir=spice_dir,
                             meteor=meteor, warn=warn)
    else:
        with err_console.status(f"scoring {task} ..."):
            result = score_files(task, predictions, references, allow_partial=allow_partial, spice_dir=spice_dir,
                                 meteor=meteor, warn=warn)
    if not per_example:
        result = {k: v for k, v in result.items() if k != "per_example"}
    result = _json_safe(result)
    if output is not None:
        from vlbench.io import atomic_write_json

        atomic_write_json(output, result)
    if output_format == "json":
        sys.stdout.write(json.dumps(result, allow_nan=False) + "\n")
        sys.stdout.flush()
    else:
        _print_rich(task, result)
