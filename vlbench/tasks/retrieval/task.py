"""The retrieval task type: split tables, caption tokens, batches, N x M evaluation and prediction files."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vlbench.data.pipeline import encode_texts, image_inputs, split_roles, trim_tokens
from vlbench.errors import DataError, SpecError
from vlbench.tasks.base import EvalResult, TaskType
from vlbench.training.augment import LabelRules
from vlbench.tasks.retrieval.heads import CrossRetrievalModel, DualRetrievalModel, select_states
from vlbench.tasks.retrieval.objectives import contrastive_loss
from vlbench.tasks.retrieval.options import TABLE_METRICS, RetrievalOptions
from vlbench.tasks.retrieval.scoring import chance_recalls, full_cross_scores, two_stage_scores

__all__ = ["RetrievalTask", "concat_states"]


def concat_states(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate per-batch states; pixels of different sizes (processors that pad per batch) are padded to the
    largest, with a pixel mask marking the real pixels."""
    if "pixel_values" in parts[0] and len({tuple(p["pixel_values"].shape[-2:]) for p in parts}) > 1:
        height = max(p["pixel_values"].shape[-2] for p in parts)
        width = max(p["pixel_values"].shape[-1] for p in parts)
        padded = []
        for p in parts:
            values = p["pixel_values"]
            mask = p.get("pixel_mask", torch.ones(values.shape[0], *values.shape[-2:], dtype=torch.long, device=values.device))
            pad = (0, width - values.shape[-1], 0, height - values.shape[-2])
            padded.append({**p, "pixel_values": F.pad(values, pad), "pixel_mask": F.pad(mask, pad)})
        parts = padded
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


@dataclass
class _SplitData:
    """One split role: texts in table order, each text's image (local index), and the image ids."""

    texts: list[str]
    caption_ids: list[int]
    text_image: list[int]
    image_ids: list[int]


class RetrievalTask(TaskType):
    """Image-text retrieval over a table of captions (one row per caption, or one row per image with a list)."""

    Options = RetrievalOptions
    predictions_suffix = ".npy"
    # median ranks are reported too, but lower is better: they cannot select checkpoints
    metric_names = tuple(name for name in TABLE_METRICS if not name.endswith("_medr"))
    # a mirrored image matches its caption once the caption's left and right swap; captions name colours
    label_rules = LabelRules(flip="rewrites", names_colours=True)

    def __init__(self, spec, dataset) -> None:
        super().__init__(spec, dataset)
        self.table = self.options.table
        self.split_names = split_roles(spec)
        self._data = {role: self._read_split(name) for role, name in self.split_names.items()}
        self._encoded: dict[str, dict[str, torch.Tensor]] = {}

    def _read_split(self, name: str) -> _SplitData:
        rows = self.dataset.split(self.table, name)
        column = self.options.caption_column
        plural = column + "s"
        if column in rows.column_names:
            texts = list(rows[column])
            owners = [int(i) for i in rows["image_id"]]
            ids = [int(i) for i in rows["caption_id"]] if "caption_id" in rows.column_names else \
                [int(i) for i in rows["id"]] if "id" in rows.column_names else list(range(len(texts)))
        elif plural in rows.column_names:
            texts, owners = [], []
            for image_id, captions in zip(rows["image_id"], rows[plural]):
                texts.extend(captions)
                owners.extend([int(image_id)] * len(captions))
            ids = list(range(len(texts)))
        else:
            raise DataError(
                f"dataset {self.dataset.name!r}, table {self.table!r}, split {name!r} has no column {column!r} or "
                f"{plural!r} (it has: {', '.join(rows.column_names)}). Set options.caption_column."
            )
        if "image_id" not in rows.column_names:
            raise DataError(f"dataset {self.dataset.name!r}, table {self.table!r}, split {name!r} has no column image_id "
                            f"(it has: {', '.join(rows.column_names)}).")
        if not texts:
            raise DataError(f"table {self.table!r} split {name!r} has no captions.")
        image_ids = list(dict.fromkeys(owners))
        local = {image_id: i for i, image_id in enumerate(image_ids)}
        return _SplitData(texts, ids, [local[o] for o in owners], image_ids)

    # --- preparation -------------------------------------------------------------------------------
    def training_texts(self) -> list[str]:
        """Training captions (for a word-level vocabulary)."""
        return list(self._data["train"].texts)

    def prepare(self, tokenizer: Any) -> None:
        """Tokenize every split's captions."""
        self.tokenizer = tokenizer
        self._encoded = {}
        for role, data in self._data.items():
            self._encoded[role] = {
                **encode_texts(tokenizer, data.texts, self.options.max_text_length),
                "image_keys": torch.tensor(data.text_image, dtype=torch.long),
                "image_ids": torch.tensor(data.image_ids, dtype=torch.long),
            }

    # --- models ------------------------------------------------------------------------------------
    def wrap(self, encoder: nn.Module) -> nn.Module:
        """Contrastive heads on a two-tower model (plus matching when it fuses), or a matching head on a joint one."""
        if callable(getattr(encoder, "encode_image", None)) and callable(getattr(encoder, "encode_text", None)):
            return DualRetrievalModel(encoder, self.options)
        if {"text", "image"} <= set(getattr(encoder, "modalities", ())):
            return CrossRetrievalModel(encoder, self.options)
        raise SpecError(
            f"task retrieval: model type {type(encoder).__name__} reads {tuple(encoder.modalities)}; retrieval needs a "
            "two-tower model (encode_image/encode_text, e.g. dual-encoder) or a joint text+image model (e.g. vilt)."
        )

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Symmetric InfoNCE when there are embeddings, plus weighted matching cross-entropy when there are pairs."""
        from vlbench.distributed import gather_with_grad

        total = torch.zeros((), device=batch["image_keys"].device)
        if "text_emb" in outputs:
            # negatives from every process's part of the global batch (one process: the batch itself)
            total = total + contrastive_loss(gather_with_grad(outputs["text_emb"]), gather_with_grad(outputs["image_emb"]),
                                             outputs["logit_scale"], gather_with_grad(batch["image_keys"]))
        if "itm_logits" in outputs:
            total = total + self.options.itm_weight * F.cross_entropy(outputs["itm_logits"].float(), outputs["itm_labels"])
        return total

    # --- data --------------------------------------------------------------------------------------
    def num_examples(self, split: str) -> int:
        """Number of captions (image-text pairs) in a split role."""
        return len(self._data[split].texts)

    def _text_batch(self, split: str, index: torch.Tensor, length: Optional[int] = None) -> dict[str, torch.Tensor]:
        return trim_tokens(self._encoded[split], index, length)

    def _image_batch(self, split: str, local: torch.Tensor, modalities: tuple[str, ...]) -> dict[str, torch.Tensor]:
        ids = self._encoded[split]["image_ids"].index_select(0, local)
        batch = {"image_ids": ids}
        if "image" in modalities:
            batch.update(image_inputs(self, ids.tolist()))
        return batch

    def collate(self, split: str, indices: list[int], modalities: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Caption tokens (trimmed to the longest), each caption's image key and id, pixels only for image models."""
        index = torch.as_tensor(indices, dtype=torch.long)
        keys = self._encoded[split]["image_keys"].index_select(0, index)
        batch = {"index": index, "image_keys": keys, **self._text_batch(split, index)}
        batch.update(self._image_batch(split, keys, modalities))
        return batch

    def resident_split(self, split, modalities, device, budget):
        """The split on the device when it fits in ``budget`` (see :mod:`vlbench.data.resident`)."""
        from vlbench.data.resident import build_resident

        encoded = self._encoded[split]
        image_ids = encoded["image_ids"].index_select(0, encoded["image_keys"]).tolist()  # each caption's image
        return build_resident(self, split, modalities, device, budget, image_ids)

    # --- robustness suites (vlbench.robustness) -----------------------------------------------------------
    def input_texts(self, split: str) -> list[str]:
        """The captions of a split role (the text side that is ranked)."""
        return list(self._data[split].texts)

    def replace_input_texts(self, split, texts, tokenizer):
        """Encode ``texts`` as the role's captions; returns the undo."""
        encoded = self._encoded[split]
        self._encoded[split] = {**encoded, **encode_texts(tokenizer, list(texts), self.options.max_text_length)}

        def restore() -> None:
            self._encoded[split] = encoded

        return restore

    def attack_problem(self, model: nn.Module) -> Optional[str]:
        """Retrieval ranks every image against every caption of the split: no per-batch objective is attacked."""
        return ("retrieval scores all images against all captions at once; a per-image PGD objective over that "
                "ranking is not implemented")

    # --- evaluation --------------------------------------------------------------------------------
    def _states(self, fn: Callable, batches: list[dict[str, torch.Tensor]], device: torch.device) -> dict[str, torch.Tensor]:
        from vlbench.distributed import gather_list, shard_range, world_size

        if world_size() == 1:
            parts = [fn({k: v.to(device, non_blocking=True) for k, v in b.items()}) for b in batches]
            return concat_states(parts)
        # each process encodes its block of batches; the blocks meet in order on every process
        mine = [fn({k: v.to(device, non_blocking=True) for k, v in batches[i].items()}) for i in shard_range(len(batches))]
        parts = gather_list([{k: v.cpu() for k, v in p.items()} for p in mine])
        return {k: v.to(device) for k, v in concat_states(parts).items()}

    @torch.no_grad()
    def similarity(self, model: nn.Module, split: str, batch_size: int, modalities: tuple[str, ...],
                   device: torch.device, scoring: Optional[str] = None) -> tuple[np.ndarray, int]:
        """The (images x texts) score matrix of a split (the model's scoring unless given), and the joint passes it took."""
        from vlbench.distributed import unwrap

        model = unwrap(model)
        scoring = scoring or model.scoring
        if scoring not in ("dual", "cross", "two-stage"):
            raise SpecError(f"retrieval scoring {scoring!r}: use dual, cross or two-stage.")
        if scoring != "cross" and not model.has_dual or scoring != "dual" and not model.has_cross:
            raise SpecError(f"retrieval scoring {scoring!r} needs a model with a "
                            f"{'dual' if scoring != 'cross' and not model.has_dual else 'cross-encoder'} stage.")
        model.eval()
        data = self._data[split]
        n_images, n_texts = len(data.image_ids), len(data.texts)
        length = max(int(self._encoded[split]["attention_mask"].sum(1).max()), 1)
        image_batches = [self._image_batch(split, torch.arange(s, min(s + batch_size, n_images)), modalities)
                         for s in range(0, n_images, batch_size)]
        text_batches = [self._text_batch(split, torch.arange(s, min(s + batch_size, n_texts)), length)
                        for s in range(0, n_texts, batch_size)]
        images = self._states(model.image_states, image_batches, device)
        texts = self._states(model.text_states, text_batches, device)

        def score_pairs(image_idx: np.ndarray, text_idx: np.ndarray) -> np.ndarray:
            i = torch.as_tensor(image_idx, dtype=torch.long, device=device)
            t = torch.as_tensor(text_idx, dtype=torch.long, device=device)
            return model.cross_scores(select_states(images, i), select_states(texts, t)).double().cpu().numpy()

        chunk = self.options.pair_batch_size
        if scoring == "cross":
            return full_cross_scores(score_pairs, n_images, n_texts, chunk), n_images * n_texts
        dual = model.dual_scores(images, texts).double().cpu().numpy()
        if scoring == "dual":
            return dual, 0
        return two_stage_scores(dual, score_pairs, model.top_k, chunk)

    def score(self, split: str, similarity: np.ndarray, pairs_scored: int, extra: Optional[dict[str, Any]] = None) -> EvalResult:
        """Recalls, median ranks and pairs scored of one split's similarity matrix."""
        from vlbench.metrics.retrieval import retrieval_evaluate

        data = self._data[split]
        result = retrieval_evaluate(similarity, data.text_image)
        metrics = {name: float(result[name]) for name in TABLE_METRICS}
        metrics["pairs_scored"] = float(pairs_scored)
        per = result["per_example"]
        per_example = {f"i2t/{data.image_ids[i]}": float(r) for i, r in per["i2t_rank"].items()}
        per_example.update({f"t2i/{data.caption_ids[t]}": float(r) for t, r in per["t2i_rank"].items()})
        n_images, n_texts = len(data.image_ids), len(data.texts)
        details = {
            "i2t_meanr": result["i2t_meanr"],
            "t2i_meanr": result["t2i_meanr"],
            "num_images": n_images,
            "num_texts": n_texts,
            "pairs_total": n_images * n_texts,
            "chance": chance_recalls(data.text_image, n_images),
            "per_example_note": "1-based ranks: i2t/<image_id> (best caption), t2i/<caption_id>",
            **(extra or {}),
        }
        predictions = {"similarity": similarity, "text_to_image": list(data.text_image), "image_ids": list(data.image_ids),
                       "caption_ids": list(data.caption_ids)}
        return EvalResult(metrics, self.primary_value(metrics), per_example, predictions, details)

    def evaluate(self, model, split, batch_size, modalities, device) -> EvalResult:
        """Score every image against every caption of a split with the model's scoring (see ``validation_scoring``)."""
        inner = getattr(model, "module", model)
        scoring = inner.scoring
        if (split == "validation" and scoring == "cross" and inner.has_dual
                and self.options.validation_scoring == "two-stage"):
            scoring = "two-stage"
        sim, pairs = self.similarity(model, split, batch_size, modalities, device, scoring)
        extra: dict[str, Any] = {"scoring": scoring}
        if scoring == "two-stage":
            extra["top_k"] = inner.top_k
        return self.score(split, sim, pairs, extra)

    def fit_and_evaluate(self, fitted, splits):
        """Score with a non-neural model: its ``similarity(n_images, n_texts)``, or one ``predict`` score per pair."""
        fitted.fit([{"image_id": self._data["train"].image_ids[i], "caption": t}
                    for t, i in zip(self._data["train"].texts, self._data["train"].text_image)])
        results = {}
        for split in splits:
            data = self._data[split]
            n_images, n_texts = len(data.image_ids), len(data.texts)
            if callable(getattr(fitted, "similarity", None)):
                sim = np.asarray(fitted.similarity(n_images, n_texts), dtype=np.float64)
            else:
                rows = [{"image_id": image_id, "caption": text} for image_id in data.image_ids for text in data.texts]
                sim = np.asarray(fitted.predict(rows), dtype=np.float64).reshape(n_images, n_texts)
            results[split] = self.score(split, sim, 0, {"scoring": "fitted"})
        return results

    def write_predictions(self, predictions: Any, path: Path) -> Path:
        """The similarity matrix as ``.npy`` (images x texts) and, beside it, ``{"text_to_image", "image_ids", "caption_ids"}``."""
        from vlbench.io import atomic_write_bytes, atomic_write_json, references_path

        buffer = io.BytesIO()
        np.save(buffer, np.asarray(predictions["similarity"]), allow_pickle=False)
        refs = {k: predictions[k] for k in ("text_to_image", "image_ids", "caption_ids")}
        # the references first: a predictions file is never left without what scores it
        atomic_write_json(references_path(path), refs, indent=None)
        return atomic_write_bytes(path, buffer.getvalue())
