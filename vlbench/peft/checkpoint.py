"""PEFT checkpoints: only the trained weights, in safetensors, next to the run record.

A record's ``weights_file`` (``seed-N.weights.safetensors``) holds the trainable parameters (adapters,
LoRA matrices, prompts, biases, the task head). :func:`load_run_model` rebuilds the frozen model from
the record (config, seed, tokenizer) and loads them, giving the trained model back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from vlbench.errors import DataError
from vlbench.io import atomic_write_bytes

__all__ = ["weights_path", "save_trained_weights", "load_trained_weights", "load_run_model"]


def weights_path(record: Path) -> Path:
    """``.../seed-N.json`` -> ``.../seed-N.weights.safetensors``."""
    record = Path(record)
    return record.with_name(record.stem + ".weights.safetensors")


def save_trained_weights(state: dict[str, torch.Tensor], path: Path, metadata: Optional[dict[str, str]] = None) -> Path:
    """Write trained weights atomically as safetensors."""
    from safetensors.torch import save

    return atomic_write_bytes(path, save(state, metadata={k: str(v) for k, v in (metadata or {}).items()}))


def load_trained_weights(model: nn.Module, path: Path) -> list[str]:
    """Load saved trained weights into a freshly assembled model; every saved tensor must find its place."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise DataError(f"trained weights {str(path)!r} do not exist.")
    state = load_file(str(path))
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise DataError(
            f"{path}: {len(result.unexpected_keys)} saved tensors have no place in the model "
            f"(e.g. {result.unexpected_keys[0]!r}); was it assembled from the same config?"
        )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(trainable - set(state))
    if missing:
        raise DataError(f"{path}: trainable parameter {missing[0]!r} (+{len(missing) - 1} more) is not in the file.")
    return sorted(state)


def load_run_model(record_path: str | Path, *, task: Any = None, cache_dir: Optional[Path] = None,
                   device: str | torch.device = "cpu") -> tuple[nn.Module, Any, dict[str, Any]]:
    """Rebuild a PEFT run's trained model from its record and weights file: (model in eval mode, task, record)."""
    from vlbench.models.pretrained import load_tokenizer, resolve_pretrained
    from vlbench.peft.assemble import assemble
    from vlbench.registry import TASK_TYPES
    from vlbench.specs import RunConfig

    record_path = Path(record_path)
    record = json.loads(record_path.read_text(encoding="utf-8"))
    if not record.get("weights_file"):
        raise DataError(f"{record_path}: this run saved no trained weights (only PEFT runs do).")
    task_config = dict(record["config"].get("task") or {})
    task_config.pop("metrics", None)  # records written before the field was removed
    config = RunConfig.model_validate({**record["config"], "task": task_config})
    if task is None:
        from vlbench.data.loading import load_dataset

        dataset = load_dataset(config.dataset, config.task.data, cache_dir, quiet=True)
        task = TASK_TYPES.get(config.task.type)(config.task, dataset)
    tokenizer_info = record.get("tokenizer") or {}
    tokenizer = load_tokenizer(tokenizer_info.get("source"), task.training_texts())
    task.prepare(tokenizer)
    reads_text = tokenizer_info.get("used", True)
    assembled = assemble(config, record["seed"], task, tokenizer if reads_text else None,
                         pretrained=resolve_pretrained(config.baseline.pretrained))
    load_trained_weights(assembled.model, record_path.with_name(record["weights_file"]))
    model = assembled.model.to(device)
    model.eval()
    return model, task, record
