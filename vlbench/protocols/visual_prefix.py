"""An offline image-text-to-text model for zero- and few-shot prompting on the embedded world.

No pretrained vision-language checkpoint is available offline, so ``vlbench visual-prefix`` builds one
from the shapes world's training split in the manner of Frozen (Tsimpoukelli et al. 2021):

1. **Language model, text only.** A small decoder (Llama architecture) learns the world's text: each
   training image's question-answer pairs written with the task's prompt templates, with one of the
   image's captions standing where the image will be, and 0 to ``max_shots`` such examples before the
   query (so that it has seen the in-context format). It never sees a pixel.
2. **Visual prefix, language model frozen.** A vision encoder (CLIP ViT architecture) and a projector
   learn to turn an image into prefix embeddings from which the frozen language model writes the
   image's caption. They never see a question.

The result is saved as a LLaVA checkpoint with its processor (``save_pretrained``), so the ``prompted``
baseline loads it through ``AutoModelForImageTextToText`` / ``AutoProcessor`` exactly as it loads a hub
checkpoint, and asks it the VQA questions it was never trained on, with k in-context examples. What it
answers zero-shot is what the image prefix carries into a language model that learned question answering
from text alone.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

__all__ = ["PrefixSettings", "build_visual_prefix_model", "language_corpus", "split_words"]

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<image>"]
_PUNCT = r"[.,?!;]"


@dataclass
class PrefixSettings:
    """Sizes and schedules of both stages (defaults: 12 minutes in all on 2 CPU cores, 9 of them the language model)."""

    lm_hidden: int = 128
    lm_layers: int = 4
    lm_heads: int = 4
    vision_hidden: int = 128
    vision_layers: int = 2
    vision_heads: int = 4
    patch_size: int = 16
    max_shots: int = 4
    lm_epochs: int = 2
    prefix_epochs: int = 2
    batch_size: int = 64
    lm_lr: float = 1e-3
    prefix_lr: float = 5e-4
    train_images: Optional[int] = None  # use only the first N training images (tests)


def split_words(text: str) -> list[str]:
    """The tokenizer's word split: punctuation marks are words of their own, case is kept."""
    return re.findall(rf"{_PUNCT}|[^\s.,?!;]+", text)


def _fill(template: str, row: dict[str, Any]) -> str:
    return template.format(**{k: row[k] for k in re.findall(r"{(\w+)}", template)})


def language_corpus(questions: list[dict[str, Any]], captions: dict[int, list[str]], template: Any,
                    max_shots: int, rng: np.random.Generator, eos: str) -> list[str]:
    """One text per training question: instruction, 0..max_shots solved examples, then the question answered.

    Every example is ``<caption of its image> <example template filled> </s>``: the caption stands where
    the prompted model will be shown the image, and the end-of-sequence mark after each answer teaches
    the model to stop once it has answered.
    """
    texts = []
    for index, row in enumerate(questions):
        shots = int(rng.integers(0, max_shots + 1))
        others = rng.choice(len(questions), size=shots, replace=False) if shots else []
        parts = [template.instruction] if template.instruction else []
        for j in [*others, index]:
            example = questions[int(j)]
            options = captions[int(example["image_id"])]
            caption = options[int(rng.integers(len(options)))]
            parts += [caption, _fill(template.example, {**example, "answer": example["multiple_choice_answer"]}), eos]
        texts.append(" ".join(parts))
    return texts


def _tokenizer(words: list[str]) -> Any:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + sorted(set(words) - set(SPECIALS)))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(_PUNCT), behavior="isolated"), pre_tokenizers.WhitespaceSplit()])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", extra_special_tokens={"image_token": "<image>"})


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    order = torch.randperm(n, generator=generator).tolist()
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _schedule(optimizer: torch.optim.Optimizer, total: int) -> Any:
    from vlbench.training.optim import make_scheduler

    return make_scheduler(optimizer, total, 0.05)


def _train_language_model(config: Any, tokenizer: Any, texts: list[str], settings: PrefixSettings, seed: int,
                          say: Callable[[str], None]) -> Any:
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    lm = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(lm.parameters(), lr=settings.lm_lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    per_epoch = math.ceil(len(texts) / settings.batch_size)
    scheduler = _schedule(optimizer, per_epoch * settings.lm_epochs)
    lm.train()
    for epoch in range(1, settings.lm_epochs + 1):
        start, total, count = time.perf_counter(), 0.0, 0
        for indices in _batches(len(texts), settings.batch_size, generator):
            enc = tokenizer([texts[i] for i in indices], return_tensors="pt", padding=True)
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            loss = lm(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            total, count = total + float(loss.detach()), count + 1
        say(f"language model epoch {epoch}/{settings.lm_epochs}: loss {total / count:.4f} "
            f"({time.perf_counter() - start:.1f} s)")
    return lm


def _caption_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor, image_token: int,
                    caption_lengths: list[int]) -> torch.Tensor:
    """Loss only on each row's caption and end mark: its last ``caption_lengths[i]`` real tokens (right padding)."""
    labels = torch.full_like(input_ids, -100)
    real = attention_mask.sum(1).tolist()
    for i, (length, n) in enumerate(zip(caption_lengths, real)):
        labels[i, n - length:n] = input_ids[i, n - length:n]
    labels[input_ids == image_token] = -100
    return labels


def _train_prefix(model: Any, processor: Any, captions: list[tuple[int, str]], images: Any, template: Any,
                  settings: PrefixSettings, seed: int, say: Callable[[str], None]) -> None:
    from PIL import Image

    for p in model.model.language_model.parameters():
        p.requires_grad_(False)
    for p in model.lm_head.parameters():
        p.requires_grad_(False)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=settings.prefix_lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed + 1)
    per_epoch = math.ceil(len(captions) / settings.batch_size)
    scheduler = _schedule(optimizer, per_epoch * settings.prefix_epochs)
    tokenizer = processor.tokenizer
    head = f"{template.instruction} " if template.instruction else ""
    model.train()
    model.model.language_model.eval()  # frozen: no dropout either
    for epoch in range(1, settings.prefix_epochs + 1):
        start, total, count = time.perf_counter(), 0.0, 0
        for indices in _batches(len(captions), settings.batch_size, generator):
            rows = [captions[i] for i in indices]
            texts = [f"{head}{processor.image_token} {caption} {tokenizer.eos_token}" for _, caption in rows]
            pixels = images.get([image_id for image_id, _ in rows]).numpy()
            enc = processor(text=texts, images=[Image.fromarray(p) for p in pixels], return_tensors="pt", padding=True)
            lengths = [len(tokenizer(f"{caption} {tokenizer.eos_token}")["input_ids"]) for _, caption in rows]
            labels = _caption_labels(enc["input_ids"], enc["attention_mask"], model.config.image_token_index, lengths)
            loss = model(**enc, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            optimizer.step()
            scheduler.step()
            total, count = total + float(loss.detach()), count + 1
        say(f"visual prefix epoch {epoch}/{settings.prefix_epochs}: caption loss {total / count:.4f} "
            f"({time.perf_counter() - start:.1f} s)")
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()


def build_visual_prefix_model(dataset: Any, template: Any, out: Path, settings: PrefixSettings, seed: int = 0,
                              say: Callable[[str], None] = print, split: str = "train") -> Path:
    """Train both stages on ``dataset``'s ``split`` (its ``vqa`` and ``captions`` tables) and save to ``out``."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    start = time.perf_counter()
    questions = [dict(r) for r in dataset.split("vqa", split)]
    caption_rows = [dict(r) for r in dataset.split("captions", split)]
    if settings.train_images is not None:
        keep = set(sorted({int(r["image_id"]) for r in caption_rows})[:settings.train_images])
        questions = [r for r in questions if int(r["image_id"]) in keep]
        caption_rows = [r for r in caption_rows if int(r["image_id"]) in keep]
    captions: dict[int, list[str]] = {}
    for row in caption_rows:
        captions.setdefault(int(row["image_id"]), []).append(row["caption"])
    questions = [q for q in questions if int(q["image_id"]) in captions]
    rng = np.random.default_rng(seed)
    texts = language_corpus(questions, captions, template, settings.max_shots, rng, "</s>")
    query_words = split_words(" ".join(_fill(template.query, q) for q in questions[:1]))
    words = {w for text in texts for w in split_words(text)} | set(query_words)
    tokenizer = _tokenizer(sorted(words))
    say(f"stage 1: {len(texts)} texts from {len(captions)} training images, vocabulary {len(tokenizer)} words")
    side = int(dataset.images.get([next(iter(captions))]).shape[1])
    text_config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=settings.lm_hidden, intermediate_size=4 * settings.lm_hidden,
        num_hidden_layers=settings.lm_layers, num_attention_heads=settings.lm_heads,
        num_key_value_heads=settings.lm_heads, max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )
    lm = _train_language_model(text_config, tokenizer, texts, settings, seed, say)

    vision_config = CLIPVisionConfig(
        hidden_size=settings.vision_hidden, intermediate_size=4 * settings.vision_hidden,
        num_hidden_layers=settings.vision_layers, num_attention_heads=settings.vision_heads, image_size=side,
        patch_size=settings.patch_size,
    )
    config = LlavaConfig(vision_config=vision_config, text_config=text_config,
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.model.language_model.load_state_dict(lm.model.state_dict())
    model.lm_head.load_state_dict(lm.lm_head.state_dict())
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side}),
        tokenizer=tokenizer, patch_size=settings.patch_size, num_additional_image_tokens=1,
        vision_feature_select_strategy="default",
    )
    pairs = [(image_id, caption) for image_id, options in captions.items() for caption in options]
    say(f"stage 2: {len(pairs)} captions, language model frozen, "
        f"{(side // settings.patch_size) ** 2} prefix tokens per image")
    _train_prefix(model, processor, pairs, dataset.images, template, settings, seed, say)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    info = {"method": "frozen language model + trained visual prefix (Tsimpoukelli et al. 2021)",
            "dataset": dataset.name, "fingerprint": getattr(dataset, "fingerprint", None), "split": split,
            "seed": seed, "settings": asdict(settings), "images": len(captions), "texts": len(texts),
            "captions": len(pairs), "seconds": round(time.perf_counter() - start, 1)}
    (out / "vlbench-visual-prefix.json").write_text(json.dumps(info, indent=2) + "\n")
    return out
