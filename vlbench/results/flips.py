"""Which test items the image flips: right with the real image and wrong with it blanked, and the reverse.

The modality ablation (:mod:`vlbench.results.ablation`) scores every test item twice, with the real images
and with blank ones. An item is *right* when its score is at least half its full mark (VQA: an answer that
at least two of the ten humans gave; with one human answer, only that answer); the image *helped* an item
that is right with the real image and wrong with the blank one, and *hurt* one that is wrong with the real
image and right with the blank one. So ``helped - hurt`` equals (items right with real images) minus (items
right with blank images), whatever the per-item scores. Counts are split by the task's item group (VQA: the
question type), and a few flipped items are kept as examples, one for each of the most flipped groups.

A task supplies, for one evaluation pass, a view ``{"group_by", "full_mark", "items": {id: {"score",
"group", "question", "answer", "image_id"}}}`` (``TaskType.flip_view``); this module only compares views.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

__all__ = ["MAX_EXAMPLES", "right", "flip_counts", "flips_block", "flip_fields", "FLIP_FIELDS", "write_thumbnail",
           "examples_html"]

MAX_EXAMPLES = 8  # examples kept per run: one for each of the most flipped groups
FLIP_FIELDS = ("flips_helped", "flips_hurt", "flips_seeds")


def right(score: float, full_mark: float) -> bool:
    """Whether an item with this score counts as answered right (at least half the full mark)."""
    return float(score) >= 0.5 * float(full_mark)


def flip_counts(real: Mapping[str, float], blank: Mapping[str, float], groups: Optional[Mapping[str, str]] = None,
                full_mark: float = 1.0) -> dict[str, Any]:
    """``{helped, hurt, right_real, right_blank, by_type: {group: {helped, hurt}}}`` over the items both passes scored."""
    if set(real) != set(blank):
        raise ValueError(f"the real and the blank pass scored different items ({len(real)} vs {len(blank)})")
    groups = groups or {}
    helped = hurt = right_real = right_blank = 0
    by_type: dict[str, dict[str, int]] = {}
    for item in sorted(real):
        with_image, without = right(real[item], full_mark), right(blank[item], full_mark)
        right_real += with_image
        right_blank += without
        if with_image == without:
            continue
        counts = by_type.setdefault(str(groups.get(item, "all")), {"helped": 0, "hurt": 0})
        counts["helped" if with_image else "hurt"] += 1
        helped += with_image
        hurt += without
    return {"helped": helped, "hurt": hurt, "items": len(real), "right_real": right_real, "right_blank": right_blank,
            "by_type": dict(sorted(by_type.items()))}


def flips_block(real_view: Optional[dict[str, Any]], blank_view: Optional[dict[str, Any]],
                max_examples: int = MAX_EXAMPLES) -> Optional[dict[str, Any]]:
    """The ablation block's ``flips``: counts from two passes' views, and one example per most flipped group."""
    if real_view is None or blank_view is None:
        return None
    real, blank = real_view["items"], blank_view["items"]
    full_mark = float(real_view.get("full_mark", 1.0))
    counts = flip_counts({k: v["score"] for k, v in real.items()}, {k: v["score"] for k, v in blank.items()},
                         {k: v.get("group", "all") for k, v in real.items()}, full_mark)
    frequent = Counter({g: c["helped"] + c["hurt"] for g, c in counts["by_type"].items()})
    examples = []
    for group, _ in sorted(frequent.items(), key=lambda gc: (-gc[1], gc[0]))[:max_examples]:
        members = [k for k in sorted(real, key=_item_order) if str(real[k].get("group", "all")) == group]
        chosen = None
        for direction in ("helped", "hurt"):  # an example of the image helping, if the group has one
            chosen = next((k for k in members if right(real[k]["score"], full_mark) == (direction == "helped")
                           and right(blank[k]["score"], full_mark) != (direction == "helped")), None)
            if chosen is not None:
                break
        item = real[chosen]
        examples.append({"id": chosen, "type": group, "direction": direction, "question": item.get("question"),
                         "answer_real": item.get("answer"), "answer_blank": blank[chosen].get("answer"),
                         "score_real": item["score"], "score_blank": blank[chosen]["score"],
                         "image_id": item.get("image_id")})
    return {"group_by": real_view.get("group_by", "item"), "full_mark": full_mark, **counts, "examples": examples}


def _item_order(key: str) -> tuple[int, Any]:
    return (0, int(key)) if key.lstrip("-").isdigit() else (1, key)


def flip_fields(records: list[dict[str, Any]], metric: Optional[str]) -> dict[str, Any]:
    """Table fields of the seeds' flips blocks for ``metric``: mean helped and hurt counts over seeds."""
    blocks = [(r.get("ablation") or {}).get("flips") for r in records
              if metric is not None and (r.get("ablation") or {}).get("metric") == metric]
    blocks = [b for b in blocks if isinstance(b, dict)]
    if not blocks:
        return dict.fromkeys(FLIP_FIELDS)
    return {"flips_helped": sum(b["helped"] for b in blocks) / len(blocks),
            "flips_hurt": sum(b["hurt"] for b in blocks) / len(blocks), "flips_seeds": len(blocks)}


def write_thumbnail(pixels: Any, path: Path, size: int = 96) -> Path:
    """Write an image (H, W, 3 uint8 array or tensor) as a PNG at most ``size`` pixels on a side."""
    import numpy as np
    from PIL import Image

    array = np.asarray(pixels.numpy() if hasattr(pixels, "numpy") else pixels, dtype=np.uint8)
    image = Image.fromarray(array)
    image.thumbnail((size, size))  # shrinks a larger image, keeps its aspect; never enlarges
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path


def examples_html(records: list[dict[str, Any]], thumbnail: Optional[Callable[[dict[str, Any], int], Optional[str]]]
                  = None) -> str:
    """The page's flip examples of one section's runs: per baseline, its first seed's examples, with thumbnails.

    ``thumbnail(record, image_id)`` writes the image beside the page and returns its file name (None: not shown).
    Every string from a record is HTML-escaped.
    """
    from vlbench.results.escape import html_text

    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: (r.get("baseline", ""), r.get("seed", 0))):
        block = (record.get("ablation") or {}).get("flips")
        if isinstance(block, dict) and block.get("examples"):
            chosen.setdefault((record["baseline"], record.get("config_hash", "")), record)
    if not chosen:
        return ""
    parts = ["<h3>Items the image flips (blank-image ablation)</h3>",
             '<p class="legend">helped: right with the real image, wrong with it blanked; hurt: the reverse. One '
             "example per most flipped group, from each baseline's first seed.</p>"]
    head = "".join(f"<th>{h}</th>" for h in ("image", "group", "question", "answer (real image)",
                                             "answer (blank image)", "flip"))
    for (baseline, _), record in chosen.items():
        block = record["ablation"]["flips"]
        rows = []
        for ex in block["examples"]:
            src = thumbnail(record, ex["image_id"]) if thumbnail is not None and ex.get("image_id") is not None else None
            image = (f'<img src="{html_text(src)}" alt="image {html_text(str(ex["image_id"]))}" loading="lazy">'
                     if src else "—")
            cells = [image] + [html_text(str(ex.get(k) if ex.get(k) is not None else "—"))
                               for k in ("type", "question", "answer_real", "answer_blank", "direction")]
            rows.append("<tr>" + "".join(f'<td class="cfg">{c}</td>' for c in cells) + "</tr>")
        summary = (f"{html_text(baseline)} (seed {html_text(str(record.get('seed')))}): helped {block['helped']}, "
                   f"hurt {block['hurt']} of {block.get('items', '?')} items, by {html_text(block.get('group_by', 'item'))}")
        parts.append(f"<details><summary>{summary}</summary><div class=\"wrap\"><table class=\"flips\">"
                     f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div></details>")
    return "".join(parts)
