"""Options of the retrieval task type and the metrics its tables show."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vlbench.tasks.base import TaskOptions

__all__ = ["RetrievalOptions", "TABLE_METRICS"]

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

