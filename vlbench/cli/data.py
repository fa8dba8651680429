"""``vlbench data build|show|stats``: build a registered dataset, draw a contact sheet, print text-only bounds."""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from vlbench.cli.app import data_app, load_plugins, path_arg
from vlbench.errors import SpecError

if TYPE_CHECKING:  # the CLI module must import without torch, so that `vlbench list` stays fast
    from vlbench.data.base import VLDataset

__all__ = ["parse_data_overrides", "load_dataset", "build", "show", "stats"]

_console = Console(highlight=False, soft_wrap=True)

_NAME_HELP = "Dataset name, optionally NAME:PATH for datasets read from files (see `vlbench list datasets`)."
_SET_HELP = "Dataset option, as data.KEY=VALUE (repeatable), e.g. --set data.train_images=2000."


def parse_data_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["data.key=value", ...]`` -> ``{key: value}``; values are read as YAML (numbers, booleans...)."""
    from vlbench.specs import parse_override

    options: dict[str, Any] = {}
    for text in items or []:
        path, value = parse_override(text)
        if path[:2] == ["task", "data"]:
            path = path[1:]  # the spelling `vlbench run` uses for the same options
        if path[0] == "data" and len(path) == 2:
            options[path[1]] = value
        else:
            raise SpecError(f"--set {text}: expected data.KEY=VALUE (or task.data.KEY=VALUE), e.g. --set data.train_images=2000.")
    return options


def load_dataset(
    name: str,
    overrides: list[str] | None = None,
    cache_dir: Path | None = None,
    quiet: bool = False,
    force: bool = False,
    plugins: list[str] | None = None,
) -> "VLDataset":
    """Build or load the registered dataset ``NAME[:PATH]`` with ``--set`` options."""
    from vlbench.data.base import default_cache_dir
    from vlbench.registry import DATASETS

    load_plugins(plugins)
    dataset_name, _, path = name.partition(":")
    builder = DATASETS.get(dataset_name)
    options = parse_data_overrides(overrides)
    kwargs: dict[str, Any] = {}
    if force:
        if "force" not in inspect.signature(builder).parameters:
            raise SpecError(f"dataset {dataset_name!r} cannot be force-rebuilt (its builder has no 'force' option).")
        kwargs["force"] = True
    return builder(path or None, options, cache_dir or default_cache_dir(), quiet, **kwargs)


@data_app.command("build")
def build(
    name: str = typer.Argument(..., help=_NAME_HELP),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", parser=path_arg,
        help="Cache folder (default: $VLBENCH_CACHE or ~/.cache/vlbench)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help=_SET_HELP),
    force: bool = typer.Option(False, "--force", help="Rebuild even when an identical cached build exists."),
    plugin: Optional[list[str]] = typer.Option(None, "--plugin", help="Python file registering extra datasets."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Generate (or reuse from cache) a dataset and print its splits and fingerprint."""
    start = time.perf_counter()
    dataset = load_dataset(name, set_, cache_dir, quiet=quiet, force=force, plugins=plugin)
    seconds = time.perf_counter() - start
    if quiet:
        return
    key = dataset.info.get("key")
    cache = f", cache {key}" if key and key != dataset.fingerprint else ""
    table = Table(title=f"{dataset.name} (fingerprint {dataset.fingerprint}{cache})")
    table.add_column("split")
    kinds = sorted(dataset.tables)
    for kind in kinds:
        table.add_column(kind, justify="right")
    splits = list(dict.fromkeys(s for kind in kinds for s in dataset.tables[kind]))
    for split in splits:
        table.add_row(split, *[str(dataset.tables[k][split].num_rows) if split in dataset.tables[k] else "-" for k in kinds])
    _console.print(table)
    _console.print(f"{len(dataset.images.ids())} images, ready in {seconds:.1f}s")


@data_app.command("show")
def show(
    name: str = typer.Argument(..., help=_NAME_HELP),
    out: Path = typer.Option(..., "--out", "-o", parser=path_arg, help="PNG file to write."),
    split: str = typer.Option("test", "--split", help="Split to draw from."),
    n: int = typer.Option(16, "--n", help="Number of images."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", parser=path_arg,
        help="Cache folder (default: $VLBENCH_CACHE or ~/.cache/vlbench)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help=_SET_HELP),
    plugin: Optional[list[str]] = typer.Option(None, "--plugin", help="Python file registering extra datasets."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Write a PNG grid of images with their questions and majority answers."""
    from vlbench.data.shapes.show import save_grid

    if out.suffix.lower() != ".png":
        raise SpecError(f"--out {str(out)!r} must end in .png.")
    if n < 1:
        raise SpecError(f"--n must be at least 1, got {n}.")
    dataset = load_dataset(name, set_, cache_dir, quiet=quiet, plugins=plugin)
    path = save_grid(dataset, out, split=split, n=n)
    if not quiet:
        _console.print(f"wrote {path}")


@data_app.command("stats")
def stats(
    name: str = typer.Argument(..., help=_NAME_HELP),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", parser=path_arg,
        help="Cache folder (default: $VLBENCH_CACHE or ~/.cache/vlbench)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help=_SET_HELP),
    train_split: str = typer.Option("train", "--train-split", help="Split the prior is learned on."),
    test_split: str = typer.Option("test", "--test-split", help="Split everything is scored on."),
    fmt: str = typer.Option("rich", "--format", help="rich or json."),
    plugin: Optional[list[str]] = typer.Option(None, "--plugin", help="Python file registering extra datasets."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Print the question-only bounds of any VQA dataset (official VQA accuracy): prior, per-string oracle, ceiling."""
    from vlbench.data.vqa_stats import BOUNDS, question_only_bounds

    if fmt not in ("rich", "json"):
        raise SpecError(f"--format {fmt!r}: use rich or json.")
    dataset = load_dataset(name, set_, cache_dir, quiet=quiet or fmt == "json", plugins=plugin)
    if "vqa" not in dataset.tables:
        raise SpecError(f"dataset {dataset.name!r} has no vqa table (it has: {', '.join(sorted(dataset.tables))}); "
                        "question-only bounds are computed for VQA datasets.")
    bounds = question_only_bounds(dataset, train_split=train_split, test_split=test_split)
    if fmt == "json":
        typer.echo(json.dumps(bounds, indent=2))
        return
    answer_types = sorted(bounds["plurality_ceiling"]["perAnswerType"])
    table = Table(
        title=f"question-only bounds on {dataset.name}/{test_split} ({bounds['n_test_questions']} questions, "
        f"{bounds['n_question_strings']} distinct strings; official VQA accuracy, %)"
    )
    table.add_column("predictor")
    table.add_column("overall", justify="right")
    for answer_type in answer_types:
        table.add_column(answer_type, justify="right")
    for key, label in BOUNDS.items():
        row = bounds[key]
        label = label.format(train=train_split, test=test_split)
        table.add_row(label, f"{row['overall']:.2f}", *[f"{row['perAnswerType'].get(t, 0):.2f}" for t in answer_types])
    _console.print(table)


@data_app.command("verify")
def verify(
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", parser=path_arg,
        help="Cache folder (default: $VLBENCH_CACHE or ~/.cache/vlbench)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only failures."),
) -> None:
    """Check every cached dataset (and decoded-image cache) against the file hashes written when it was built."""
    from vlbench.data.base import default_cache_dir
    from vlbench.data.integrity import MANIFEST, verify_manifest
    from vlbench.errors import DataError

    root = Path(cache_dir) if cache_dir else default_cache_dir()
    if cache_dir is not None and not root.is_dir():  # a typo must not pass as "0 folders, all fine"
        raise DataError(f"--cache-dir {str(root)!r} is not a folder; name the cache to check (default: $VLBENCH_CACHE "
                        "or ~/.cache/vlbench).")
    folders = sorted(p.parent for p in root.glob(f"*/*/{MANIFEST}") if not p.parent.name.startswith("."))
    bad = []
    for folder in folders:
        try:
            verify_manifest(folder, folder.parent.name, "")
        except DataError as exc:
            bad.append(folder)
            _console.print(f"FAILED {exc}".rstrip())
            continue
        if not quiet:
            _console.print(f"ok     {folder}")
    if bad:
        raise DataError(f"{len(bad)} of {len(folders)} cache folder(s) under {str(root)!r} fail their hashes; rebuild them "
                        "with `vlbench data build NAME --force` (or delete the folders).")
    if not quiet:
        _console.print(f"{len(folders)} cache folder(s) under {root} match their hashes")
