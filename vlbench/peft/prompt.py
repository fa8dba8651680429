"""Prompt tuning for any text-reading encoder: trainable virtual tokens inserted right after [CLS].

The prompt parameters are peft's ``PromptEmbedding`` (same initialisation options as peft's prompt
tuning). peft's own prompt-learning wrappers expect a causal-LM / seq2seq / classification model with
``inputs_embeds``; vlbench encoders take batches, so the prompt enters through a forward hook on the
encoder's word-embedding layer: the batch gets ``n`` placeholder tokens after position 0 (mask 1), and
the hook replaces their embeddings with the prompt. Positions stay consistent because the runner builds
from-config encoders with room for the extra tokens. The pooled [CLS] output is unchanged in meaning.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from vlbench.errors import SpecError
from vlbench.models.base import EncoderOutput

__all__ = ["find_word_embeddings", "PromptTunedEncoder"]


def find_word_embeddings(encoder: nn.Module) -> nn.Embedding:
    """The token-embedding layer of an encoder: the first ``nn.Embedding`` whose name ends in ``word_embeddings``."""
    for name, module in encoder.named_modules():
        if isinstance(module, nn.Embedding) and name.endswith("word_embeddings"):
            return module
    raise SpecError(
        f"peft prompt: {type(encoder).__name__} has no token-embedding layer named '*word_embeddings'; "
        "prompt tuning needs a model that reads text through one."
    )


def _insert(t: torch.Tensor, n: int, fill: Any) -> torch.Tensor:
    pad = t.new_full((t.shape[0], n), fill)
    return torch.cat([t[:, :1], pad, t[:, 1:]], dim=1)


class PromptTunedEncoder(nn.Module):
    """Wraps an encoder; ``prompt`` (peft ``PromptEmbedding``) holds the only new parameters."""

    def __init__(self, encoder: nn.Module, num_virtual_tokens: int, init: str = "sample_vocab") -> None:
        super().__init__()
        from peft import PromptTuningConfig
        from peft.tuners.prompt_tuning import PromptEmbedding

        if "text" not in getattr(encoder, "modalities", ("text",)):
            raise SpecError(f"peft prompt: {type(encoder).__name__} does not read text; prompt tuning needs text input.")
        self.encoder = encoder
        words = find_word_embeddings(encoder)
        config = PromptTuningConfig(
            task_type="FEATURE_EXTRACTION",
            num_virtual_tokens=num_virtual_tokens,
            token_dim=words.embedding_dim,
            num_transformer_submodules=1,
            prompt_tuning_init="SAMPLE_VOCAB" if init == "sample_vocab" else "RANDOM",
        )
        self.prompt = PromptEmbedding(config, words)
        self.num_virtual_tokens = num_virtual_tokens
        self.hidden_size = encoder.hidden_size
        self.modalities = tuple(encoder.modalities)
        self._active = False
        self._hook = words.register_forward_hook(self._replace)

    def _replace(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> Optional[torch.Tensor]:
        if not self._active:
            return None
        n = self.num_virtual_tokens
        ids = torch.arange(n, device=output.device)
        prompt = self.prompt(ids).to(output.dtype).unsqueeze(0).expand(output.shape[0], -1, -1)
        return torch.cat([output[:, :1], prompt, output[:, 1 + n:]], dim=1)

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """The wrapped encoder on the batch with the virtual tokens inserted after [CLS]."""
        n = self.num_virtual_tokens
        prompted = dict(batch)
        prompted["input_ids"] = _insert(batch["input_ids"], n, 0)
        prompted["attention_mask"] = _insert(batch["attention_mask"], n, 1)
        if batch.get("token_type_ids") is not None:
            prompted["token_type_ids"] = _insert(batch["token_type_ids"], n, 0)
        self._active = True
        try:
            return self.encoder(prompted)
        finally:
            self._active = False
