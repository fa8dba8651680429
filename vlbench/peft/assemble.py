"""Build the model of one run exactly as the runner trains it: encoder -> (cached frozen features) -> head -> PEFT.

The runner and :func:`vlbench.peft.checkpoint.load_run_model` both go through :func:`assemble`, so a
model rebuilt from a run record (same config, seed and tokenizer) has the same frozen weights as the
trained one, and loading the saved trained weights reproduces its predictions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from torch import nn

from vlbench.errors import SpecError
from vlbench.models.base import BuildContext, Encoder, FittedModel, build_model
from vlbench.peft.apply import PeftSummary, apply_peft
from vlbench.peft.config import FrozenSpec, PromptSpec, parse_peft
from vlbench.registry import MODELS
from vlbench.specs import RunConfig
from vlbench.training.seeding import seed_everything

__all__ = ["Assembled", "assemble", "frozen_parts", "warm_features"]

# images per pass of a frozen part while warming: a CNN at 224 px holds ~5 MB of activations per image
PART_CHUNK = 64


@dataclass
class Assembled:
    """A run's model and what was done to it."""

    model: Any
    modalities: tuple[str, ...]
    peft: Any = None
    summary: Optional[PeftSummary] = None
    features: Any = None  # the CachedFeatureEncoder of a frozen backbone with cached features
    image_transform: Any = None  # the encoder's own image transform (None: the task's square resize)

    @property
    def fitted(self) -> bool:
        """True for counting models (no gradient descent)."""
        return isinstance(self.model, FittedModel)


def assemble(config: RunConfig, seed: int, task: Any, tokenizer: Any, *, pretrained: Optional[str],
             tokenizer_source: Optional[str] = None, data_fingerprint: str = "",
             cache_dir: Optional[Path] = None) -> Assembled:
    """Seed, build the encoder (``pretrained`` already resolved to a path or hub id), wrap it, apply PEFT."""
    source = f"baseline {config.baseline.name!r}"
    model_cls = MODELS.get(config.baseline.model)
    peft_spec = parse_peft(config.baseline.peft, source)
    options = task.options
    # prompt tuning inserts virtual tokens: from-config encoders need that many more positions
    extra_positions = peft_spec.num_virtual_tokens if isinstance(peft_spec, PromptSpec) else 0
    context = BuildContext(
        task_type=config.task.type,
        tokenizer=tokenizer,
        image_size=options.image_size,
        max_text_length=options.max_text_length + extra_positions,
        extras=task.build_context_extras(),
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
    )
    if pretrained:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # transformers' per-load weight bar would interleave with vlbench's
    # the seed is set right before building so that initial weights do not depend on tokenizer work
    seed_everything(seed)
    built = build_model(config.baseline.model, config.baseline.config, pretrained, context, source)
    modalities = tuple(model_cls.modalities)
    # a pretrained model sees images the way it was trained (its processor's resize, normalisation, padding)
    transform = built.image_transform() if isinstance(built, Encoder) and "image" in modalities else None
    task.image_transform = transform
    if isinstance(built, FittedModel):
        if peft_spec is not None:
            raise SpecError(f"{source}: model type {config.baseline.model!r} is not trained by gradient descent; remove its peft block.")
        return Assembled(built, modalities, image_transform=transform)
    features = None
    if isinstance(peft_spec, FrozenSpec) and peft_spec.cache_features:
        from vlbench.models.pretrained import content_identities, tokenizer_signature
        from vlbench.training.frozen import CachedFeatureEncoder, FeatureCache, feature_cache_key

        path = None
        if cache_dir is not None:
            # the weights and the vocabulary by content: new weights at the same path get new features
            key = feature_cache_key(
                model=config.baseline.model, config=config.baseline.config, pretrained=pretrained,
                seed=seed, tokenizer=tokenizer_signature(tokenizer) if tokenizer is not None else tokenizer_source,
                data_fingerprint=data_fingerprint, content=content_identities(config),
                task={"type": config.task.type, "options": config.task.options, "data": config.task.data},
            )
            path = Path(cache_dir) / "features" / f"{key}.safetensors"
        built = features = CachedFeatureEncoder(built, FeatureCache(path))
    model: nn.Module = task.wrap(built)
    summary = apply_peft(model, peft_spec) if peft_spec is not None else None
    return Assembled(model, modalities, peft_spec, summary, features, transform)


def frozen_parts(model: Any) -> list[nn.Module]:
    """The frozen pretrained parts inside a model (their features are computed once per image and cached)."""
    if not isinstance(model, nn.Module):
        return []
    return [m for m in model.modules() if getattr(m, "stays_frozen", False) and hasattr(m, "save_cache")]


def _warm_parts(parts: list[nn.Module], task: Any, batch_size: int, device: Any, progress: Any,
                label: str) -> list[dict[str, Any]]:
    """Run each frozen part once over every image of the dataset (its own transform), then save its cache."""
    import torch

    from vlbench.data.images import pixel_batch
    from vlbench.distributed import agree, on_main

    store = task.dataset.images
    ids = [int(i) for i in store.ids()]
    size = min(batch_size, PART_CHUNK)
    chunks = [ids[i:i + size] for i in range(0, len(ids), size)]
    bar = progress.add_task(f"{label} (image part)", total=len(chunks) * len(parts)) if progress is not None else None
    out = []
    for part in parts:
        if hasattr(part, "check_identity"):
            part.check_identity()  # the cache file is named by the weights the part was built with
        before, loaded = part.computed, part.cache.loaded_from_disk
        part.to(device)

        def compute(part: nn.Module = part) -> None:
            with torch.no_grad():
                for chunk in chunks:
                    pixels = pixel_batch(store, chunk, task.image_transform, task.options.image_size)["pixel_values"]
                    part(pixels.to(device))
                    if bar is not None:
                        progress.update(bar, advance=1)

        agree(compute)  # a process that cannot compute the features fails the run on all of them
        path = on_main(part.save_cache)  # one writer of the shared feature cache; its failure reaches every process
        out.append({"part": part.describe(), "images": len(ids), "computed": part.computed - before,
                    "reused_from_disk": loaded, "file": str(path) if path is not None else None})
    if bar is not None:
        progress.remove_task(bar)
    return out


def warm_features(assembled: Assembled, task: Any, batch_size: int, device: Any, progress: Any = None,
                  label: str = "features") -> Optional[dict[str, Any]]:
    """Fill (and save) the feature caches of frozen parts and of a frozen backbone; what the record says about them."""
    start = time.perf_counter()
    parts = frozen_parts(assembled.model)
    part_info = _warm_parts(parts, task, batch_size, device, progress, label) if parts else None
    encoder = assembled.features
    if encoder is None:
        return {"parts": part_info, "seconds": time.perf_counter() - start} if part_info else None
    from vlbench.training.frozen import warm_cache

    loaded = encoder.cache.loaded_from_disk
    from vlbench.distributed import agree, on_main

    computed = agree(lambda: warm_cache(encoder, task, ["train", "validation", "test"], batch_size, device, progress,
                                        label))
    path = on_main(encoder.cache.save)  # one writer of the shared feature cache; its failure reaches every process
    info = {"cached": len(encoder.cache), "computed": computed, "reused_from_disk": loaded,
            "file": str(path) if path is not None else None, "seconds": time.perf_counter() - start}
    if part_info:
        info["parts"] = part_info
    return info
