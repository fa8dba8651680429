"""Image-text retrieval: rank every caption for every image and every image for every caption.

Three ways of scoring the N images x M texts of a split, chosen by the model:

* **dual** (contrastive, CLIP-style): projection heads over an image tower and a text tower and a learnable
  temperature, trained with symmetric InfoNCE; N + M tower passes, then one dot product per pair.
* **cross** (image-text matching): a joint model reads each (image, text) pair and a matching head says
  whether they belong together; trained with hard negatives (mined in-batch from the contrastive
  similarities when the model has towers, sampled in-batch otherwise); N x M joint passes.
* **two-stage**: each query's top-k candidates under the dual scores are re-ranked by the cross-encoder;
  at most k x (N + M) joint passes, and exactly the full cross ranking when k covers every candidate.

Every result reports ``pairs_scored`` (joint passes) beside the recalls, and the chance level is in
``details``. Predictions are the (images x texts) similarity matrix as ``.npy``, with a references JSON
beside it, so that ``vlbench score --task retrieval`` reproduces the numbers.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

import vlbench.builtins  # noqa: F401  (lazy entries first, so registering the objects replaces them)
from vlbench.errors import DataError, SpecError
from vlbench.data.pipeline import encode_texts, image_inputs, split_roles, trim_tokens
from vlbench.models.base import EncoderOutput
from vlbench.registry import register_task
from vlbench.tasks.base import EvalResult, TaskOptions, TaskType
from vlbench.progress import track

__all__ = [
    "RetrievalOptions",
    "RetrievalTask",
    "DualRetrievalModel",
    "CrossRetrievalModel",
    "contrastive_loss",
    "full_cross_scores",
    "two_stage_scores",
    "chance_recalls",
    "references_path",
]

# metrics shown in tables, in this order (mean ranks stay in details to keep tables readable)
TABLE_METRICS = ("rsum", "i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10", "i2t_medr", "t2i_medr")


class RetrievalOptions(TaskOptions):
    """Options of the retrieval task type (the ``options:`` block of its spec)."""

    max_text_length: int = 48
    table: str = Field("captions", description="table with one row per caption (image_id, caption) or per image (captions)")
    caption_column: str = "caption"
    embed_dim: int = Field(128, ge=2, description="width of the contrastive projection heads")
    temperature: float = Field(0.07, gt=0, description="initial softmax temperature of the contrastive loss")
    learn_temperature: bool = True
    itm_weight: float = Field(1.0, ge=0, description="weight of the image-text matching loss next to InfoNCE")
    hard_negatives: Literal["contrastive", "random"] = Field(
        "contrastive", description="how matching negatives are drawn in-batch when the model has a dual stage"
    )
    negatives_per_pair: Literal[1, 2] = Field(
        1, description="matching negatives per positive pair: 2 = a wrong image and a wrong text each (ALBEF), "
        "1 = alternately one or the other (two thirds of the matching cost)"
    )
    validation_scoring: Literal["model", "two-stage"] = Field(
        "two-stage", description="how a full cross-encoder with a dual stage is scored for early stopping: its own N x M "
        "scoring, or the cheaper two-stage re-ranking at its top_k (test scoring is always the model's own)"
    )
    pair_batch_size: int = Field(1024, ge=1, description="pairs per cross-encoder forward pass when scoring")
    cross_score: Literal["itm", "itm+dual"] = Field(
        "itm+dual", description="a pair's cross score: matching log-odds, plus the scaled contrastive similarity when "
        "the model has a dual stage (as BLIP-2 re-ranks)"
    )


# --------------------------------------------------------------------------------------------------
# scoring helpers (pure, so that tests can check them against independent computations)
# --------------------------------------------------------------------------------------------------
PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _score_in_chunks(score_pairs: PairScorer, image_idx: np.ndarray, text_idx: np.ndarray, chunk: int,
                     label: str) -> np.ndarray:
    """``score_pairs`` over aligned index arrays, ``chunk`` pairs per call; with several processes each scores
    every N-th chunk and all of them receive every score."""
    from vlbench.distributed import gather_list, rank, world_size

    out = np.empty(image_idx.size, dtype=np.float64)
    starts = list(range(0, image_idx.size, chunk))
    mine = starts[rank()::world_size()]
    parts = []
    for start in track(mine, len(mine), label):
        stop = start + chunk
        out[start:stop] = score_pairs(image_idx[start:stop], text_idx[start:stop])
        parts.append((start, out[start:stop]))
    if world_size() > 1:
        for start, values in gather_list(parts):
            out[start:start + values.size] = values
    return out


def full_cross_scores(score_pairs: PairScorer, n_images: int, n_texts: int, chunk: int = 1024) -> np.ndarray:
    """Every (image, text) pair through ``score_pairs(image_idx, text_idx) -> scores``: an (N, M) float64 matrix."""
    cells = np.arange(n_images * n_texts)
    return _score_in_chunks(score_pairs, cells // n_texts, cells % n_texts, chunk,
                            "cross-scoring pairs").reshape(n_images, n_texts)


def two_stage_scores(dual: np.ndarray, score_pairs: PairScorer, k: int, chunk: int = 1024) -> tuple[np.ndarray, int]:
    """Re-rank each query's top-``k`` dual candidates with the cross-encoder; returns (matrix, pairs scored).

    The cross-encoder scores the union of every image's top-k texts and every text's top-k images (each
    pair once). In the returned matrix the scored pairs carry their cross scores shifted above every
    unscored pair, which keep their dual scores: each query's list is its scored candidates ordered by
    the cross-encoder, then the rest ordered by the dual encoder. When every pair is scored the matrix is
    exactly the full cross-encoder matrix.
    """
    dual = np.asarray(dual, dtype=np.float64)
    n_images, n_texts = dual.shape
    selected = np.zeros(dual.shape, dtype=bool)
    k_texts, k_images = min(k, n_texts), min(k, n_images)
    # stable sorts: ties in the dual scores pick candidates by index, the same way on every platform
    top_texts = np.argsort(-dual, axis=1, kind="stable")[:, :k_texts]
    top_images = np.argsort(-dual, axis=0, kind="stable")[:k_images, :]
    selected[np.repeat(np.arange(n_images), k_texts), top_texts.reshape(-1)] = True
    selected[top_images.reshape(-1), np.tile(np.arange(n_texts), k_images)] = True
    image_idx, text_idx = np.nonzero(selected)
    cross = _score_in_chunks(score_pairs, image_idx, text_idx, chunk, "re-ranking pairs")
    if selected.all():
        out = np.empty_like(dual)
        out[image_idx, text_idx] = cross
        return out, int(image_idx.size)
    out = dual.copy()
    offset = float(dual[~selected].max() - cross.min()) + 1.0
    out[image_idx, text_idx] = cross + max(offset, 0.0)
    return out, int(image_idx.size)


def chance_recalls(text_to_image: list[int], n_images: int, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Expected R@K (percent) and rsum of a uniformly random ranking (images with c of M texts: 1 - C(M-c,K)/C(M,K))."""
    counts = np.bincount(np.asarray(text_to_image, dtype=np.int64), minlength=n_images)
    n_texts = len(text_to_image)
    out: dict[str, float] = {}
    for k in ks:
        kk = min(k, n_texts)
        queried = counts[counts > 0]
        miss = [math.comb(n_texts - c, kk) / math.comb(n_texts, kk) for c in queried]
        out[f"i2t_R@{k}"] = 100.0 * (1.0 - float(np.mean(miss))) if len(miss) else 0.0
    for k in ks:
        out[f"t2i_R@{k}"] = 100.0 * min(k, n_images) / n_images
    out["rsum"] = sum(out[f"{d}_R@{k}"] for d in ("i2t", "t2i") for k in ks)
    return out


def contrastive_loss(text_emb: torch.Tensor, image_emb: torch.Tensor, logit_scale: torch.Tensor,
                     keys: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of pairs; pairs of the same image (equal ``keys``) are all positives."""
    logits = logit_scale * text_emb.float() @ image_emb.float().t()
    positive = (keys[:, None] == keys[None, :]).float()
    targets = positive / positive.sum(1, keepdim=True)
    t2i = -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()
    i2t = -(targets * F.log_softmax(logits.t(), dim=1)).sum(1).mean()
    return (t2i + i2t) / 2


def _concat_states(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
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


def references_path(predictions: Path) -> Path:
    """The references JSON written beside a predictions file (``<stem>.references.json``, as captioning does)."""
    return predictions.with_name(predictions.stem + ".references.json")


# --------------------------------------------------------------------------------------------------
# task heads
# --------------------------------------------------------------------------------------------------
def _select(states: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v.index_select(0, index) for k, v in states.items()}


def _sample_negatives(weights: torch.Tensor, allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One column per row drawn with probability ~ ``weights`` among ``allowed`` ones; rows with none are dropped."""
    rows = torch.nonzero(allowed.any(1), as_tuple=True)[0]
    if rows.numel() == 0:
        return rows, rows
    w = (weights[rows] * allowed[rows]).float()
    w = w + 1e-6 * allowed[rows].float()  # rows whose softmax underflowed still draw among the allowed
    return rows, torch.multinomial(w, 1).squeeze(1)


class DualRetrievalModel(nn.Module):
    """Projection heads and a learnable temperature over a two-tower model; a matching head when it can fuse.

    The encoder needs ``encode_image(batch)`` and ``encode_text(batch)`` (see ``vlbench.models.dual_encoder``);
    with ``fuse(image_out, text_out)`` too (``vlbench.models.itm``) the model also scores pairs jointly.
    """

    def __init__(self, encoder: nn.Module, options: RetrievalOptions) -> None:
        super().__init__()
        self.encoder = encoder
        width = getattr(encoder, "tower_size", encoder.hidden_size)
        self.image_proj = nn.Linear(width, options.embed_dim, bias=False)
        self.text_proj = nn.Linear(width, options.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / options.temperature)),
                                        requires_grad=options.learn_temperature)
        self.has_cross = callable(getattr(encoder, "fuse", None))
        # the fusion transformer's pooled output has the towers' width
        self.itm_head = nn.Linear(width, 2) if self.has_cross else None
        self.has_dual = True
        self.scoring = getattr(encoder, "scoring", "dual") if self.has_cross else "dual"
        self.top_k = int(getattr(encoder, "top_k", 16))
        self.hard_negatives = options.hard_negatives
        self.cross_score = options.cross_score
        self.negatives_per_pair = options.negatives_per_pair

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), capped at 100 as in CLIP."""
        return self.logit_scale.clamp(max=math.log(100.0)).exp()

    def image_states(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Normalised embedding (and the patch states when the model fuses) of each image."""
        out = self.encoder.encode_image(batch)
        states = {"emb": F.normalize(self.image_proj(out.pooled).float(), dim=-1)}
        if self.has_cross:
            states.update(seq=out.sequence, mask=out.mask)
        return states

    def text_states(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Normalised embedding (and the token states when the model fuses) of each text."""
        out = self.encoder.encode_text(batch)
        states = {"emb": F.normalize(self.text_proj(out.pooled).float(), dim=-1)}
        if self.has_cross:
            states.update(seq=out.sequence, mask=out.mask)
        return states

    def dual_scores(self, images: dict[str, torch.Tensor], texts: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cosine similarities (N, M)."""
        return images["emb"] @ texts["emb"].t()

    def cross_scores(self, images: dict[str, torch.Tensor], texts: dict[str, torch.Tensor]) -> torch.Tensor:
        """Matching log-odds of aligned (image, text) pairs (P,), plus their scaled cosine under ``itm+dual``."""
        logits = self._itm(images, texts)
        score = (logits[:, 1] - logits[:, 0]).float()
        if self.cross_score == "itm+dual":
            score = score + self.scale().detach() * (images["emb"] * texts["emb"]).sum(-1)
        return score

    def _itm(self, images: dict[str, torch.Tensor], texts: dict[str, torch.Tensor]) -> torch.Tensor:
        pooled = self.encoder.fuse(EncoderOutput(pooled=images["emb"], sequence=images["seq"], mask=images["mask"]),
                                   EncoderOutput(pooled=texts["emb"], sequence=texts["seq"], mask=texts["mask"]))
        return self.itm_head(pooled)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Training outputs: both embeddings and the scale; matching logits over mined negatives when fusing."""
        images, texts = self.image_states(batch), self.text_states(batch)
        out = {"text_emb": texts["emb"], "image_emb": images["emb"], "logit_scale": self.scale()}
        if not self.has_cross:
            return out
        keys = batch["image_keys"]
        allowed = keys[:, None] != keys[None, :]
        with torch.no_grad():
            if self.hard_negatives == "contrastive":
                sims = out["logit_scale"] * texts["emb"] @ images["emb"].t()
                t2i_w, i2t_w = F.softmax(sims, dim=1), F.softmax(sims.t(), dim=1)
            else:
                t2i_w = i2t_w = torch.ones_like(allowed, dtype=torch.float)
            text_rows, neg_images = _sample_negatives(t2i_w, allowed)
            image_rows, neg_texts = _sample_negatives(i2t_w, allowed.t())
            if self.negatives_per_pair == 1:
                # even pairs get a wrong image, odd pairs a wrong text: both directions, two thirds of the cost
                keep_t, keep_i = text_rows % 2 == 0, image_rows % 2 == 1
                text_rows, neg_images = text_rows[keep_t], neg_images[keep_t]
                image_rows, neg_texts = image_rows[keep_i], neg_texts[keep_i]
        all_rows = torch.arange(keys.shape[0], device=keys.device)
        image_index = torch.cat([all_rows, neg_images, image_rows])
        text_index = torch.cat([all_rows, text_rows, neg_texts])
        out["itm_logits"] = self._itm(_select(images, image_index), _select(texts, text_index)).float()
        labels = torch.zeros(image_index.shape[0], dtype=torch.long, device=keys.device)
        labels[: keys.shape[0]] = 1
        out["itm_labels"] = labels
        return out


class CrossRetrievalModel(nn.Module):
    """A matching head over a joint encoder's pooled output (e.g. ViLT); negatives sampled in-batch.

    With no dual stage there is nothing to mine negatives from cheaply: each pair gets one negative,
    half of them a wrong image and half a wrong text, drawn uniformly from the other images of the batch.
    Scoring always covers all N x M pairs.
    """

    has_dual = False
    has_cross = True
    scoring = "cross"
    top_k = 0

    def __init__(self, encoder: nn.Module, options: RetrievalOptions) -> None:
        super().__init__()
        self.encoder = encoder
        self.itm_head = nn.Linear(encoder.hidden_size, 2)

    def image_states(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Pixels (the joint encoder reads them per pair)."""
        return {k: batch[k] for k in ("pixel_values", "pixel_mask") if k in batch}

    def text_states(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Token ids and masks."""
        return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}

    def _itm(self, images: dict[str, torch.Tensor], texts: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.itm_head(self.encoder({**texts, **images}).pooled)

    def cross_scores(self, images: dict[str, torch.Tensor], texts: dict[str, torch.Tensor]) -> torch.Tensor:
        """Matching log-odds of aligned (image, text) pairs (P,)."""
        logits = self._itm(images, texts)
        return (logits[:, 1] - logits[:, 0]).float()

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Matching logits over the batch's pairs and one sampled negative per pair."""
        keys = batch["image_keys"]
        n = keys.shape[0]
        allowed = keys[:, None] != keys[None, :]
        rows, partners = _sample_negatives(torch.ones_like(allowed, dtype=torch.float), allowed)
        swap_image = torch.rand(rows.shape[0], device=keys.device) < 0.5
        all_rows = torch.arange(n, device=keys.device)
        image_index = torch.cat([all_rows, torch.where(swap_image, partners, rows)])
        text_index = torch.cat([all_rows, torch.where(swap_image, rows, partners)])
        images, texts = self.image_states(batch), self.text_states(batch)
        logits = self._itm(_select(images, image_index), _select(texts, text_index)).float()
        labels = torch.zeros(image_index.shape[0], dtype=torch.long, device=keys.device)
        labels[:n] = 1
        return {"itm_logits": logits, "itm_labels": labels}


# --------------------------------------------------------------------------------------------------
# the task type
# --------------------------------------------------------------------------------------------------
@dataclass
class _SplitData:
    """One split role: texts in table order, each text's image (local index), and the image ids."""

    texts: list[str]
    caption_ids: list[int]
    text_image: list[int]
    image_ids: list[int]


@register_task("retrieval", description="image-text retrieval (R@1/5/10, rsum), dual, cross and two-stage scoring")
class RetrievalTask(TaskType):
    """Image-text retrieval over a table of captions (one row per caption, or one row per image with a list)."""

    Options = RetrievalOptions
    predictions_suffix = ".npy"
    # median ranks are reported too, but lower is better: they cannot select checkpoints
    metric_names = tuple(name for name in TABLE_METRICS if not name.endswith("_medr"))

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

    # --- evaluation --------------------------------------------------------------------------------
    def _states(self, fn: Callable, batches: list[dict[str, torch.Tensor]], device: torch.device) -> dict[str, torch.Tensor]:
        from vlbench.distributed import gather_list, shard_range, world_size

        if world_size() == 1:
            parts = [fn({k: v.to(device, non_blocking=True) for k, v in b.items()}) for b in batches]
            return _concat_states(parts)
        # each process encodes its block of batches; the blocks meet in order on every process
        mine = [fn({k: v.to(device, non_blocking=True) for k, v in batches[i].items()}) for i in shard_range(len(batches))]
        parts = gather_list([{k: v.cpu() for k, v in p.items()} for p in mine])
        return {k: v.to(device) for k, v in _concat_states(parts).items()}

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
            return model.cross_scores(_select(images, i), _select(texts, t)).double().cpu().numpy()

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
        from vlbench.io import atomic_write_bytes, atomic_write_json

        buffer = io.BytesIO()
        np.save(buffer, np.asarray(predictions["similarity"]), allow_pickle=False)
        refs = {k: predictions[k] for k in ("text_to_image", "image_ids", "caption_ids")}
        # the references first: a predictions file is never left without what scores it
        atomic_write_json(references_path(path), refs, indent=None)
        return atomic_write_bytes(path, buffer.getvalue())
