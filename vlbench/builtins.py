"""Built-in registrations, lazy so that ``vlbench list`` does not import torch or transformers."""

from vlbench.registry import DATASETS, METRICS, MODELS, TASK_TYPES

TASK_TYPES.add("vqa", "vlbench.tasks.vqa:VQATask", description="visual question answering, official VQA v2 accuracy")

MODELS.add("answer-prior", "vlbench.models.prior:AnswerPrior", description="most frequent training answer per question type")
MODELS.add("bert-text", "vlbench.models.text_bert:TextBertEncoder", description="BERT encoder over the text only")
MODELS.add("vilt", "vlbench.models.vilt:ViltEncoder", description="single-stream ViLT over text tokens and image patches")

DATASETS.add("shapes", "vlbench.data.shapes:build_shapes", description="embedded synthetic shapes world, generated offline")

METRICS.add("vqa_accuracy", "vlbench.metrics.vqa:vqa_evaluate", description="official VQA v2 accuracy (leave-one-annotator-out)")

# image-text retrieval (issue 5)
TASK_TYPES.add("retrieval", "vlbench.tasks.retrieval:RetrievalTask", description="image-text retrieval (R@1/5/10, rsum): dual, cross and two-stage scoring")
MODELS.add("dual-encoder", "vlbench.models.dual_encoder:DualEncoder", description="two towers (ViT image, BERT text) for contrastive matching")
MODELS.add("dual-encoder-blind", "vlbench.models.dual_encoder:BlindDualEncoder", description="dual-encoder text tower; images replaced by a random code per id (no pixels)")
MODELS.add("dual-itm", "vlbench.models.itm:AlignFuseEncoder", description="ALBEF-style dual encoder + fusion cross-encoder (contrastive + matching)")
MODELS.add("random-scores", "vlbench.models.random_scores:RandomScores", description="uniform random scores (chance level); reads no input")

# captioning and multimodal machine translation (issue 5)
TASK_TYPES.add("captioning", "vlbench.tasks.captioning:CaptioningTask", description="image captioning, COCO BLEU/METEOR/ROUGE-L/CIDEr (pycocoevalcap)")
TASK_TYPES.add("vmt", "vlbench.tasks.vmt:VMTTask", description="multimodal machine translation, sacreBLEU BLEU and chrF")
MODELS.add("blind", "vlbench.models.blind:BlindEncoder", description="no input at all: learned constant features (blind floor of generation tasks)")

# baseline zoo (issue 4)
MODELS.add("image-only", "vlbench.models.image_only:ImageOnlyEncoder", description="visual stream alone (small ResNet grid + self-attention), no text")
MODELS.add("film", "vlbench.models.film:FilmEncoder", description="early fusion: question-conditioned CNN (FiLM, Perez et al. 2018), from scratch")
MODELS.add("coattention", "vlbench.models.coattention:CoAttentionEncoder", description="two-stream co-attention model (ViLBERT/LXMERT style): BERT text stream, ResNet-grid visual stream")

# datasets read from their official files (images stay on disk), and any Hugging Face dataset
DATASETS.add("vqav2", "vlbench.data.files.vqav2:build_vqav2", description="official VQA v2 files + COCO 2014 images (vqav2:DIR)")
DATASETS.add("coco-karpathy", "vlbench.data.files.karpathy:build_coco_karpathy", description="COCO captions, Karpathy split (coco-karpathy:DIR)")
DATASETS.add("flickr30k", "vlbench.data.files.karpathy:build_flickr30k", description="Flickr30k captions, Karpathy split (flickr30k:DIR)")
DATASETS.add("multi30k", "vlbench.data.files.multi30k:build_multi30k", description="Multi30k task 1 + Flickr30k images (multi30k:DIR)")
DATASETS.add("hf", "vlbench.data.files.hf:build_hf", description="any Hugging Face dataset, hub id or save_to_disk folder, with a column mapping (hf:ID_OR_DIR)")
