"""The manifest of vlbench's own types: one lazy ``"module:attr"`` line per task type, model type, dataset and metric.

This is the only place a built-in is registered (the modules carry no decorators). The registries import
this module themselves before their first use, so nothing else imports it; entries stay lazy so that
``vlbench list`` imports neither torch nor transformers. Third-party code registers with the decorators of
``vlbench.registry`` instead (see docs/extending.md).
"""

from vlbench.registry import DATASETS, METRICS, MODELS, TASK_TYPES

# task types
TASK_TYPES.add("vqa", "vlbench.tasks.vqa:VQATask", description="visual question answering, official VQA v2 accuracy")
TASK_TYPES.add("retrieval", "vlbench.tasks.retrieval:RetrievalTask", description="image-text retrieval (R@1/5/10, rsum): dual, cross and two-stage scoring")
TASK_TYPES.add("captioning", "vlbench.tasks.captioning:CaptioningTask", description="image captioning, COCO BLEU/METEOR/ROUGE-L/CIDEr (pycocoevalcap)")
TASK_TYPES.add("vmt", "vlbench.tasks.vmt:VMTTask", description="multimodal machine translation, sacreBLEU BLEU and chrF")

# model types: floors and text-only
MODELS.add("answer-prior", "vlbench.models.prior:AnswerPrior", description="most frequent training answer per question type (no learning)")
MODELS.add("blind", "vlbench.models.blind:BlindEncoder", description="no input at all: learned constant features (blind floor of generation tasks)")
MODELS.add("random-scores", "vlbench.models.random_scores:RandomScores", description="uniform random scores (chance level); reads no input")
MODELS.add("bert-text", "vlbench.models.text_bert:TextBertEncoder", description="BERT encoder over the text only (transformers BertModel)")
MODELS.add("image-only", "vlbench.models.image_only:ImageOnlyEncoder", description="visual stream alone (small ResNet grid + self-attention), no text")

# model types: fusion (baseline zoo, issue 4)
MODELS.add("vilt", "vlbench.models.vilt:ViltEncoder", description="single-stream ViLT over text tokens and image patches (transformers ViltModel)")
MODELS.add("film", "vlbench.models.film:FilmEncoder", description="early fusion: question-conditioned CNN (FiLM, Perez et al. 2018), from scratch")
MODELS.add("coattention", "vlbench.models.coattention:CoAttentionEncoder", description="two-stream co-attention model (ViLBERT/LXMERT style): BERT text stream, ResNet- or EfficientNet-grid visual stream")
MODELS.add("relation-network", "vlbench.models.relation_network:RelationNetworkEncoder",
           description="relation network over grid cells + coordinates (Santoro et al. 2017), from scratch")

# model types: the offline pretrained track (issue 21), pretrained parts (MiniLM, EfficientNet-Lite0) composed
MODELS.add("vl-stream", "vlbench.models.vl_stream:VLStreamEncoder",
           description="single stream (VisualBERT style): a pretrained BERT over [question tokens; projected image-part tokens]")
MODELS.add("image-part", "vlbench.models.image_part:ImagePartEncoder",
           description="a pretrained image-encoder part's pooled vector alone (EfficientNet-Lite0), no text")

# model types: image-text retrieval (issue 5)
MODELS.add("dual-encoder", "vlbench.models.dual_encoder:DualEncoder", description="two towers (ViT image, BERT text) for contrastive matching")
MODELS.add("dual-encoder-blind", "vlbench.models.dual_encoder:BlindDualEncoder", description="dual-encoder text tower; images replaced by a random code per id (no pixels)")
MODELS.add("dual-itm", "vlbench.models.itm:AlignFuseEncoder", description="ALBEF-style dual encoder + fusion cross-encoder (contrastive + matching)")

# model types: zero/few-shot prompting
MODELS.add("prompted", "vlbench.models.prompted:PromptedVLM", reads_prompt=True,
           description="an image-text-to-text model answering by generation from the task's prompt, k in-context examples")

# model types: generating with a pretrained decoder (SmolLM2, issue 21); they read the task's prompt.query
MODELS.add("smollm", "vlbench.models.smollm_generator:SmolLMText", reads_prompt=True,
           description="SmolLM2-135M-Instruct writing the answer from the text alone (LoRA-tuned), offline GGUF")
MODELS.add("smollm-llava", "vlbench.models.smollm_generator:SmolLMLlava", reads_prompt=True,
           description="LLaVA-style: EfficientNet-Lite0 cells -> trained MLP projector -> visual tokens before the prompt -> SmolLM2")

# datasets: the embedded one, the official files (images stay on disk), and any Hugging Face dataset
DATASETS.add("shapes", "vlbench.data.shapes:build_shapes", description="embedded synthetic shapes world, generated offline from a seed")
DATASETS.add("vqav2", "vlbench.data.files.vqav2:build_vqav2", description="official VQA v2 files + COCO 2014 images (vqav2:DIR)")
DATASETS.add("coco-karpathy", "vlbench.data.files.karpathy:build_coco_karpathy", description="COCO captions, Karpathy split (coco-karpathy:DIR)")
DATASETS.add("flickr30k", "vlbench.data.files.karpathy:build_flickr30k", description="Flickr30k captions, Karpathy split (flickr30k:DIR)")
DATASETS.add("multi30k", "vlbench.data.files.multi30k:build_multi30k", description="Multi30k task 1 (official repository layout) + Flickr30k images (multi30k:DIR)")
DATASETS.add("hf", "vlbench.data.files.hf:build_hf", description="any Hugging Face dataset, hub id or save_to_disk folder, with a column mapping (hf:ID_OR_DIR)")

# metrics, equal to the official implementations
METRICS.add("vqa_accuracy", "vlbench.metrics.vqa:vqa_evaluate", description="official VQA v2 accuracy (vqaEval.py): overall, per answer/question type")
METRICS.add("coco_caption", "vlbench.metrics.captioning:caption_evaluate", description="pycocoevalcap BLEU-1..4, METEOR, ROUGE-L, CIDEr (+SPICE) after PTB tokenization")
METRICS.add("retrieval_recall", "vlbench.metrics.retrieval:retrieval_evaluate", description="image-text retrieval R@1/5/10, medr, meanr, rsum (VSE++ conventions)")
METRICS.add("sacrebleu", "vlbench.metrics.translation:translation_evaluate", description="sacreBLEU BLEU and chrF (default settings) with signatures")
