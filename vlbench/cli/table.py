"""``vlbench table``, ``vlbench leaderboard`` and ``vlbench validate``: results from run records."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vlbench.cli.app import app, err_console, path_arg, wide_console

__all__ = ["table", "peft", "leaderboard", "claims", "validate"]


def _read(results_dirs: list[Path], task: Optional[str], skip_invalid: bool):
    """Records of every folder; a bad record is one error line (or, with --skip-invalid, a warning)."""
    from vlbench.errors import VLBenchError
    from vlbench.results.records import read_records

    found = read_records(results_dirs)
    if found.problems and not skip_invalid:
        path, problem = found.problems[0]
        more = f" (and {len(found.problems) - 1} more bad records)" if len(found.problems) > 1 else ""
        raise VLBenchError(f"{path}: not a valid run record: {problem}{more}; fix or remove it, see "
                           f"`vlbench validate`, or pass --skip-invalid to leave it out.")
    for path, problem in found.problems:
        err_console.print(f"warning: {path}: left out, not a valid run record: {problem}", markup=False)
    for line in found.duplicates:
        err_console.print(f"warning: duplicate run: {line}", markup=False)
    records = [r for r in found.records if task is None or r["task"] == task]
    where = ", ".join(repr(str(d)) for d in results_dirs)
    if not records:
        raise VLBenchError(f"no run records under {where}" + (f" for task {task!r}" if task else "") + ".")
    return records, found


def _write(text: str, out: Optional[Path]) -> None:
    from vlbench.errors import VLBenchError
    from vlbench.io import atomic_write_text

    if out is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    if out.is_dir():
        raise VLBenchError(f"--out {str(out)!r} is a directory; give a file path.")
    try:
        atomic_write_text(out, text)
    except OSError as exc:
        raise VLBenchError(f"--out {str(out)!r} cannot be written ({exc.strerror or exc}).") from None


@app.command("table")
def table(
    results_dirs: list[Path] = typer.Argument(..., parser=path_arg,
        help="Folders of run records (as written by `vlbench run`)."),
    format: str = typer.Option("rich", "--format", "-f", help="rich, md, csv, latex, json or html."),
    task: Optional[str] = typer.Option(None, "--task", help="Only this task."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Only this metric (and test it instead of the primary)."),
    out: Optional[Path] = typer.Option(None, "--out", parser=path_arg, help="Write to this file instead of stdout."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Leave out invalid records with a warning."),
    reference: Optional[str] = typer.Option(None, "--reference",
        help="Baseline every Δ and p is measured from (default: each task's reference_baseline)."),
) -> None:
    """Aggregate records per config over seeds: mean ± std, 95% CI, n, Δ vs the reference with two p-values."""
    from vlbench.errors import VLBenchError
    from vlbench.results.aggregate import aggregate
    from vlbench.results.table import FORMATS, render

    if format not in FORMATS:
        raise VLBenchError(f"--format {format!r}: use one of {', '.join(FORMATS)}.")
    records, found = _read(results_dirs, task, skip_invalid)
    if reference is not None and not any(r.get("baseline") == reference for r in records):
        known = ", ".join(sorted({str(r.get("baseline")) for r in records}))
        raise VLBenchError(f"--reference {reference!r}: no record of that baseline here; baselines: {known}.")
    result = aggregate(records, metric=metric, reference=reference)
    if metric is not None and not result.rows:
        known = sorted({m for r in records if r.get("status") == "ok" for m in r["test"]["metrics"]})
        raise VLBenchError(f"--metric {metric!r}: no record has it; known metrics: {', '.join(known)}.")
    if found.duplicates:
        result.notes.append(f"{len(found.duplicates)} duplicate run records (same config hash and seed) counted once.")
    rendered = render(result, format)
    if format != "rich":
        _write(rendered, out)
        return
    if out is None:
        wide_console().print(rendered)
        return
    import io

    from rich.console import Console

    console = Console(record=True, width=200, file=io.StringIO())
    console.print(rendered)
    _write(console.export_text(), out)


def _thumbnail_writer(records: list[dict], out: Path, notes: list[str]):
    """``thumbnail(record, image_id)`` for the page: the image from the run's own dataset, as a PNG beside the page.

    Each dataset with flip examples is loaded once, from the local cache or built offline; one that cannot be
    loaded, or whose content no longer matches the record's fingerprint, is named in a note and shows no images.
    """
    import json

    from vlbench.data.loading import load_dataset
    from vlbench.errors import VLBenchError
    from vlbench.results.flips import write_thumbnail

    def key(record: dict) -> str:
        config = record.get("config") or {}
        return json.dumps([config.get("dataset"), (config.get("task") or {}).get("data") or {}], sort_keys=True)

    datasets: dict[str, object] = {}
    for record in records:
        block = (record.get("ablation") or {}).get("flips")
        if record.get("status") != "ok" or not isinstance(block, dict) or not block.get("examples"):
            continue
        if key(record) in datasets:
            continue
        config = record.get("config") or {}
        try:
            dataset = load_dataset(config["dataset"], (config.get("task") or {}).get("data") or {}, None, quiet=True)
        except (VLBenchError, OSError, KeyError, ValueError) as exc:
            notes.append(f"flip example images of {record.get('dataset')} not shown: its dataset could not be loaded "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}).")
            dataset = None
        if dataset is not None and dataset.fingerprint != (record.get("data") or {}).get("fingerprint"):
            notes.append(f"flip example images of {record.get('dataset')} not shown: the dataset on disk is not the "
                         "one the runs read (fingerprints differ).")
            dataset = None
        datasets[key(record)] = dataset

    def thumbnail(record: dict, image_id: int):
        dataset = datasets.get(key(record))
        if dataset is None:
            return None
        name = f"flip-{dataset.fingerprint[:12]}-{int(image_id)}.png"
        if not (out / name).exists():
            write_thumbnail(dataset.images.get([int(image_id)])[0], out / name)
        return name

    return thumbnail


def _summaries(folders: list[Path]) -> list[dict]:
    """Every continual-learning summary under the folders (``<sequence>/summaries/*.json``)."""
    from vlbench.errors import VLBenchError
    from vlbench.protocols.continual.report import load_summaries

    found: list[dict] = []
    for folder in folders:
        for place in sorted({p.parent for p in Path(folder).rglob("summaries") if p.is_dir()}):
            try:
                found.extend(load_summaries(place))
            except VLBenchError:
                continue  # a summaries folder with no summary in it
    return found


def _claims_page(records: list[dict], folders: list[Path], command: str, options=None):
    """The claims of the records (and of the continual summaries under the folders), with their record sets."""
    from vlbench.results.claims import ClaimsPage, Options, build_claims, record_sets

    summaries = _summaries(folders)
    options = options or Options()
    return ClaimsPage(build_claims(records, summaries, options), record_sets([str(f) for f in folders], records, summaries),
                      command, options)


@app.command("peft")
def peft(
    results_dirs: list[Path] = typer.Argument(..., parser=path_arg,
        help="Folders of run records holding PEFT runs, their full fine-tuning twins and the text-only reference."),
    task: Optional[str] = typer.Option(None, "--task", help="Only this task."),
    reference: Optional[str] = typer.Option(None, "--reference",
        help="Text-only baseline the gains are measured from (default: each task's reference_baseline)."),
    format: str = typer.Option("md", "--format", "-f", help="md, csv or latex."),
    out: Optional[Path] = typer.Option(None, "--out", parser=path_arg, help="Write to this file instead of stdout."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Leave out invalid records with a warning."),
) -> None:
    """PEFT per method: trainable share of full fine-tuning's parameters and share of its gain over text-only kept."""
    from vlbench.errors import VLBenchError
    from vlbench.results.peft_share import SHARE_FORMATS, peft_shares, render_shares

    if format not in SHARE_FORMATS:
        raise VLBenchError(f"--format {format!r}: use one of {', '.join(SHARE_FORMATS)}.")
    records, _ = _read(results_dirs, task, skip_invalid)
    _write(render_shares(peft_shares(records, reference), format), out)


@app.command("claims")
def claims(
    results_dirs: list[Path] = typer.Argument(..., parser=path_arg,
        help="Folders of run records and protocol outputs (e.g. results/runs results/protocols)."),
    out: Optional[Path] = typer.Option(None, "--out", parser=path_arg, help="Write the Markdown page to this file."),
    alpha: float = typer.Option(0.05, "--alpha", min=1e-6, max=0.5, help="Level of every test, after Holm's correction."),
    margin: float = typer.Option(1.0, "--equivalence-margin", min=0.0,
        help="'Adds nothing' means within ± this many points of the primary metric (TOST)."),
    kept: float = typer.Option(0.9, "--kept", min=0.0, max=1.0,
        help="'Most of the gain': the share of full fine-tuning's gain a PEFT run must keep."),
    max_share: float = typer.Option(0.1, "--max-share", min=0.0, max=1.0,
        help="'A small share of its parameters': the most a PEFT run may train, as a share of its full twin's."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Leave out invalid records with a warning."),
) -> None:
    """Claims of the literature tested on the records: verdict, effect and interval, test, p, rows and commands."""
    import shlex

    from vlbench.results.claims import Options
    from vlbench.results.claims.render import markdown_page

    records, _ = _read(results_dirs, None, skip_invalid)
    options = Options(alpha=alpha, margin=margin, kept=kept, max_share=max_share)
    words = ["vlbench", "claims", *(str(d) for d in results_dirs)]
    for flag, value, default in (("--alpha", alpha, 0.05), ("--equivalence-margin", margin, 1.0), ("--kept", kept, 0.9),
                                 ("--max-share", max_share, 0.1)):
        if value != default:
            words += [flag, f"{value:g}"]
    words += ["--out", str(out)] if out is not None else []
    page = _claims_page(records, results_dirs, shlex.join(words), options)
    _write(markdown_page(page), out)
    if out is not None:
        typer.echo(f"wrote {out}: " + "; ".join(f"{c.number} {c.verdict}" for c in page.claims))


@app.command("leaderboard")
def leaderboard(
    results_dirs: list[Path] = typer.Argument(..., parser=path_arg, help="Folders of run records."),
    out: Path = typer.Option(..., "--out", parser=path_arg, help="Folder to write the static site to (index.html)."),
    task: Optional[str] = typer.Option(None, "--task", help="Only this task."),
    claims_from: Optional[list[Path]] = typer.Option(None, "--claims-from", parser=path_arg,
        help="More folders (e.g. results/protocols) read only for the claims section, not for the tables."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Leave out invalid records with a warning."),
) -> None:
    """Write a one-page static leaderboard (no server, no network): tables, tests, plots per task, and claims."""
    from vlbench.errors import VLBenchError
    from vlbench.io import atomic_write_text
    from vlbench.results.leaderboard import build_page

    records, found = _read(results_dirs, task, skip_invalid)
    notes = [f"{len(found.duplicates)} duplicate run records (same config hash and seed) counted once."] \
        if found.duplicates else []
    if out.exists() and not out.is_dir():
        raise VLBenchError(f"--out {str(out)!r} is a file; give a folder for the site.")
    extra = _read(claims_from, None, skip_invalid)[0] if claims_from else []
    sections = []
    if task is None:  # the claims span tasks: a page of one task shows none
        import shlex

        from vlbench.results.claims import NOT_TESTED
        from vlbench.results.claims.render import html_section

        words = ["vlbench", "claims", *(str(d) for d in [*results_dirs, *(claims_from or [])])]
        claims_page = _claims_page(records + extra, [*results_dirs, *(claims_from or [])], shlex.join(words))
        if any(c.verdict != NOT_TESTED for c in claims_page.claims):  # a section of nothing but "not tested" is noise
            sections.append(html_section(claims_page))
    page = build_page(records, notes=notes, thumbnail=_thumbnail_writer(records, out, notes), sections=sections)
    try:
        path = atomic_write_text(out / "index.html", page)
    except OSError as exc:
        raise VLBenchError(f"--out {str(out)!r} cannot be written ({exc.strerror or exc}).") from None
    typer.echo(f"wrote {path} ({len(records)} records)")


@app.command("validate")
def validate(
    results_dirs: list[Path] = typer.Argument(..., parser=path_arg, help="Folders (or record files) to check."),
) -> None:
    """Check run records against the record schema: one line per bad record; exit 2 when any is bad."""
    from vlbench.errors import VLBenchError
    from vlbench.results.records import read_record, record_files

    files: list[Path] = []
    for item in results_dirs:
        if item.is_file():
            files.append(item)
        elif item.is_dir():
            files.extend(record_files(item))
        else:
            raise VLBenchError(f"{str(item)!r} does not exist.")
    bad = 0
    for path in files:
        _, problem = read_record(path)
        if problem:
            bad += 1
            err_console.print(f"error: {path}: {problem}", markup=False)
    if bad:
        raise VLBenchError(f"{bad} of {len(files)} run records are invalid (listed above); fix or remove them.")
    typer.echo(f"{len(files)} valid run records")
