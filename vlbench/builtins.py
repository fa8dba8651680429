"""Built-in registrations, lazy so that ``vlbench list`` does not import torch or transformers."""

from vlbench.registry import DATASETS, METRICS, MODELS, TASK_TYPES

TASK_TYPES.add("vqa", "vlbench.tasks.vqa:VQATask", description="visual question answering, official VQA v2 accuracy")

MODELS.add("answer-prior", "vlbench.models.prior:AnswerPrior", description="most frequent training answer per question type")
MODELS.add("bert-text", "vlbench.models.text_bert:TextBertEncoder", description="BERT encoder over the text only")
MODELS.add("vilt", "vlbench.models.vilt:ViltEncoder", description="single-stream ViLT over text tokens and image patches")

DATASETS.add("shapes", "vlbench.data.shapes:build_shapes", description="embedded synthetic shapes world, generated offline")

METRICS.add("vqa_accuracy", "vlbench.metrics.vqa:vqa_evaluate", description="official VQA v2 accuracy (leave-one-annotator-out)")
