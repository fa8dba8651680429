"""Checks that predictions and references cover the same example ids (shared by every metric family)."""

from __future__ import annotations

from typing import Hashable, Iterable

from vlbench.errors import DataError

__all__ = ["align_ids", "format_ids"]

_SHOWN = 5


def format_ids(ids: Iterable[Hashable], limit: int = _SHOWN) -> str:
    """The first ``limit`` ids as ``1, 2, 3, ...`` (sorted when they are comparable)."""
    items = list(ids)
    try:
        items = sorted(items)
    except TypeError:  # mixed id types: keep the given order
        pass
    text = ", ".join(repr(i) if isinstance(i, str) else str(i) for i in items[:limit])
    return text + (", ..." if len(items) > limit else "")


def align_ids(
    predicted: Iterable[Hashable],
    reference: Iterable[Hashable],
    *,
    kind: str = "id",
    allow_partial: bool = False,
) -> tuple[list[Hashable], str | None]:
    """Ids to score, in reference order, and a warning (or None); a mismatch raises DataError unless partial.

    The reference order is kept because the official tools sum per-example scores in that order, and a
    floating-point sum in another order can move the last rounded digit.
    """
    pred_set = set(predicted)
    ref_list = list(dict.fromkeys(reference))
    missing = [i for i in ref_list if i not in pred_set]
    ref_set = set(ref_list)
    extra = [i for i in pred_set if i not in ref_set]
    if not missing and not extra:
        return ref_list, None
    parts = []
    if missing:
        parts.append(f"{len(missing)} of {len(ref_list)} reference {kind}s have no prediction (first: {format_ids(missing)})")
    if extra:
        parts.append(f"{len(extra)} predicted {kind}s are not in the references (first: {format_ids(extra)})")
    shared = [i for i in ref_list if i in pred_set]
    message = "; ".join(parts)
    if not allow_partial:
        raise DataError(
            f"predictions do not match the references: {message}. Fix the files, or pass --allow-partial "
            f"to score only the {len(shared)} shared {kind}s."
        )
    if not shared:
        raise DataError(f"predictions and references share no {kind}: {message}.")
    return shared, f"scoring only the {len(shared)} shared {kind}s: {message}."
