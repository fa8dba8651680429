"""The model heads of retrieval: contrastive projections (plus matching) over two towers, or matching over a joint model."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from vlbench.models.base import EncoderOutput
from vlbench.tasks.retrieval.objectives import sample_negatives
from vlbench.tasks.retrieval.options import RetrievalOptions

__all__ = ["DualRetrievalModel", "CrossRetrievalModel", "select_states"]


def select_states(states: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    """The rows ``index`` of every tensor of an image's or text's states."""
    return {k: v.index_select(0, index) for k, v in states.items()}


class DualRetrievalModel(nn.Module):
    """Projection heads and a learnable temperature over a two-tower model; a matching head when it can fuse.

    The encoder needs ``encode_image(batch)`` and ``encode_text(batch)`` (see ``vlbench.models.dual_encoder``);
    with ``fuse(image_out, text_out)`` too (``vlbench.models.itm``) the model also scores pairs jointly.
    """

    def __init__(self, encoder: nn.Module, options: RetrievalOptions) -> None:
        super().__init__()
        self.encoder = encoder
        width = getattr(encoder, "tower_size", encoder.hidden_size)
        # towers of different widths (e.g. MiniLM 384, EfficientNet-Lite0 1280) meet in one embed_dim space
        self.image_proj = nn.Linear(getattr(encoder, "image_width", width), options.embed_dim, bias=False)
        self.text_proj = nn.Linear(getattr(encoder, "text_width", width), options.embed_dim, bias=False)
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
            text_rows, neg_images = sample_negatives(t2i_w, allowed)
            image_rows, neg_texts = sample_negatives(i2t_w, allowed.t())
            if self.negatives_per_pair == 1:
                # even pairs get a wrong image, odd pairs a wrong text: both directions, two thirds of the cost
                keep_t, keep_i = text_rows % 2 == 0, image_rows % 2 == 1
                text_rows, neg_images = text_rows[keep_t], neg_images[keep_t]
                image_rows, neg_texts = image_rows[keep_i], neg_texts[keep_i]
        all_rows = torch.arange(keys.shape[0], device=keys.device)
        image_index = torch.cat([all_rows, neg_images, image_rows])
        text_index = torch.cat([all_rows, text_rows, neg_texts])
        out["itm_logits"] = self._itm(select_states(images, image_index), select_states(texts, text_index)).float()
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
        rows, partners = sample_negatives(torch.ones_like(allowed, dtype=torch.float), allowed)
        swap_image = torch.rand(rows.shape[0], device=keys.device) < 0.5
        all_rows = torch.arange(n, device=keys.device)
        image_index = torch.cat([all_rows, torch.where(swap_image, partners, rows)])
        text_index = torch.cat([all_rows, torch.where(swap_image, rows, partners)])
        images, texts = self.image_states(batch), self.text_states(batch)
        logits = self._itm(select_states(images, image_index), select_states(texts, text_index)).float()
        labels = torch.zeros(image_index.shape[0], dtype=torch.long, device=keys.device)
        labels[:n] = 1
        return {"itm_logits": logits, "itm_labels": labels}
