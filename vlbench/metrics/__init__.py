"""Metrics equal to the official implementations: VQA accuracy, COCO captioning, retrieval recall, sacreBLEU.

The metric registry names them ``vqa_accuracy``, ``coco_caption``, ``retrieval_recall`` and ``sacrebleu``
(see ``vlbench.builtins``); heavy dependencies (pycocoevalcap, sacrebleu, Java) are only touched when a
metric is computed.
"""

from vlbench.metrics.captioning import CaptionScorer, caption_evaluate, shared_caption_scorer
from vlbench.metrics.retrieval import retrieval_evaluate, retrieval_ranks
from vlbench.metrics.translation import translation_evaluate
from vlbench.metrics.vqa import normalize_answer, vqa_evaluate

__all__ = [
    "CaptionScorer",
    "caption_evaluate",
    "shared_caption_scorer",
    "retrieval_evaluate",
    "retrieval_ranks",
    "translation_evaluate",
    "normalize_answer",
    "vqa_evaluate",
]
