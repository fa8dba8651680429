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

Modules: :mod:`.options` (the spec's options), :mod:`.scoring` (pure N x M scoring and chance levels),
:mod:`.objectives` (InfoNCE and in-batch negatives), :mod:`.heads` (the dual and cross model heads) and
:mod:`.task` (the task type: splits, batches, evaluation and prediction files).
"""

from __future__ import annotations

from vlbench.tasks.retrieval.heads import CrossRetrievalModel, DualRetrievalModel
from vlbench.tasks.retrieval.objectives import contrastive_loss
from vlbench.tasks.retrieval.options import TABLE_METRICS, RetrievalOptions
from vlbench.tasks.retrieval.scoring import chance_recalls, full_cross_scores, two_stage_scores
from vlbench.tasks.retrieval.task import RetrievalTask, concat_states

__all__ = [
    "RetrievalOptions",
    "RetrievalTask",
    "DualRetrievalModel",
    "CrossRetrievalModel",
    "contrastive_loss",
    "full_cross_scores",
    "two_stage_scores",
    "chance_recalls",
    "concat_states",
    "TABLE_METRICS",
]
