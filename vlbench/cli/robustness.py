"""``vlbench robustness``: the evaluation suites on finished runs that kept their trained weights."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vlbench.cli.app import app, path_arg, wide_console
from vlbench.errors import VLBenchError

__all__ = ["robustness", "parse_suites", "robustness_settings"]


def parse_suites(text: Optional[str], flag: str = "--suites") -> Optional[list[str]]:
    """``"corruptions,attack"`` -> the suite names; an unknown or repeated name is one clear error."""
    from vlbench.specs import ROBUSTNESS_SUITES

    if text is None:
        return None
    names = [part.strip() for part in text.split(",")]
    for name in names:
        if name not in ROBUSTNESS_SUITES:
            raise VLBenchError(f"{flag} {text[:60]!r}: unknown suite {name[:40]!r}; use any of "
                               f"{', '.join(ROBUSTNESS_SUITES)}, comma-separated.")
    if len(set(names)) != len(names):
        raise VLBenchError(f"{flag} {text[:60]!r}: name each suite once.")
    return names


def _numbers(text: Optional[str], flag: str, kind: type) -> Optional[list]:
    if text is None:
        return None
    try:
        return [kind(part.strip()) for part in text.split(",")]
    except ValueError:
        raise VLBenchError(f"{flag} {text[:60]!r}: expected comma-separated numbers, e.g. {flag} "
                           f"{'1,3,5' if kind is int else '1,2,4'}.") from None


def robustness_settings(suites: Optional[str], severities: Optional[str], budgets: Optional[str],
                        steps: Optional[int]) -> dict:
    """The ``training.robustness`` fields the flags give (only those given), checked by RobustnessSettings."""
    from pydantic import ValidationError

    from vlbench.specs import RobustnessSettings, format_validation_error

    fields = {"suites": parse_suites(suites), "severities": _numbers(severities, "--severities", int),
              "attack_budgets": _numbers(budgets, "--budgets", float), "attack_steps": steps}
    given = {k: v for k, v in fields.items() if v is not None}
    try:
        RobustnessSettings.model_validate(given)
    except ValidationError as exc:
        raise VLBenchError(format_validation_error("robustness settings", exc)) from None
    return given


@app.command("robustness")
def robustness(
    run_dir: Path = typer.Argument(..., parser=path_arg,
        help="A folder of finished run records (or one record) whose runs kept their weights (--keep-model)."),
    suites: Optional[str] = typer.Option(None, "--suites", help="Comma-separated: corruptions, text, attack (default all)."),
    severities: Optional[str] = typer.Option(None, "--severities", help="Corruption severities, e.g. 1,3,5 (default 1-5)."),
    budgets: Optional[str] = typer.Option(None, "--budgets", help="PGD budgets in 1/255 of the pixel range (default 1,2,4)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, max=1000, help="PGD steps (default 10)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or mps."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", parser=path_arg,
        help="Dataset cache (default $VLBENCH_CACHE or ~/.cache/vlbench)."),
) -> None:
    """Score finished runs under the evaluation suites (docs/robustness.md) and add the results to their records."""
    import torch

    from vlbench.io import atomic_write_json
    from vlbench.results.records import RECORD_SCHEMA
    from vlbench.robustness.finished import finished_runs, score_finished_run
    from vlbench.specs import RobustnessSettings

    settings = RobustnessSettings.model_validate(robustness_settings(suites, severities, budgets, steps))
    if device not in ("cpu", "cuda", "mps"):
        raise VLBenchError(f"--device {device[:40]!r}: use cpu, cuda or mps.")
    runs = finished_runs(run_dir)
    console = wide_console()
    tasks: dict = {}
    for path, record in runs:
        block = score_finished_run(path, record, settings, torch.device(device), tasks, cache_dir,
                                   lambda msg: console.print(msg, markup=False))
        atomic_write_json(path, {**record, "schema": RECORD_SCHEMA, "robustness": block})
        console.print(f"{path}: robustness recorded", markup=False)
