"""Adversarial training in embedding space: FreeLB (Zhu et al., ICLR 2020) for both modalities, as VILLA does.

For each training batch, after the clean loss's backward pass, K steps of projected gradient ascent move a
perturbation of each perturbed modality's embeddings (the word-embedding output for text; the image features
or patch embeddings for images, as the model type's ``embedding_modules()`` names them) inside a ball of
radius epsilon around the clean input, one ball per example and modality. Each step's loss at the current
perturbation, divided by K, is backpropagated into the parameters' gradients: as in FreeLB, the update
uses the adversarial gradients averaged over the K steps, added to the clean gradient as in VILLA (which
also adds a KL consistency term; that one is not used here). L2 balls (FreeLB's and VILLA's choice) take the
Frobenius norm over an example's whole perturbation and ascend along the normalised gradient; L-inf balls
clamp every entry and ascend along the gradient's sign (PGD). Text perturbations are zero at padding.

The perturbation enters through forward hooks on the embedding modules, present only during the perturbed
passes: it works on frozen backbones (PEFT: the gradient reaches the perturbation through frozen weights,
which stay as they are), under autocast (the perturbation is kept in float32 and cast to the embedding's
dtype), and for modules called several times in one forward pass (one perturbation per call).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Optional

import torch
from torch import nn

from vlbench.errors import TrainingError
from vlbench.specs.robustness import AdversarialConfig

__all__ = ["embedding_modules", "Perturbation", "EmbeddingAdversary"]


def embedding_modules(model: nn.Module) -> dict[str, nn.Module]:
    """{modality: embedding module} of the first module inside ``model`` that names them ({} if none does)."""
    for module in model.modules():
        named = getattr(module, "embedding_modules", None)
        if callable(named):
            return dict(named())
    return {}


class Perturbation:
    """The perturbations of one batch, keyed by (modality, call), created at the first perturbed pass."""

    def __init__(self, config: AdversarialConfig, generator: torch.Generator,
                 attention_mask: Optional[torch.Tensor]) -> None:
        self.config, self.generator, self.attention_mask = config, generator, attention_mask
        self.deltas: dict[tuple[str, int], torch.Tensor] = {}
        self.masks: dict[tuple[str, int], torch.Tensor] = {}
        self.calls: dict[str, int] = {}

    def _mask(self, modality: str, output: torch.Tensor) -> torch.Tensor:
        mask = self.attention_mask
        if modality == "text" and mask is not None and output.dim() == 3 and tuple(output.shape[:2]) == tuple(mask.shape):
            return mask.to(output.device, torch.float32)[:, :, None]
        return torch.ones((output.shape[0],) + (1,) * (output.dim() - 1), device=output.device)

    def _initial(self, output: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        init = self.config.init
        if not init:
            return torch.zeros(output.shape, device=output.device)
        noise = (2 * torch.rand(output.shape, generator=self.generator) - 1).to(output.device) * mask
        if self.config.norm == "linf":
            return noise * init
        # FreeLB: uniform noise scaled by init / sqrt(the example's number of perturbed entries)
        entries = (mask.expand(output.shape).flatten(1).sum(1)).clamp_min(1)
        return self.project(noise * (init / entries.sqrt()).view((-1,) + (1,) * (output.dim() - 1)))

    def begin_pass(self) -> None:
        """A new forward pass: calls are counted from the first again."""
        self.calls = {}

    def hook(self, modality: str) -> Callable[[nn.Module, Any, Any], Any]:
        """The forward hook that adds this modality's perturbation to an embedding module's output."""

        def add(module: nn.Module, inputs: Any, output: Any) -> Any:
            if not torch.is_tensor(output):
                raise TrainingError(f"adversarial training: the {modality} embedding module "
                                    f"{type(module).__name__} returns {type(output).__name__}, not a tensor.")
            call = self.calls.get(modality, 0)
            self.calls[modality] = call + 1
            key = (modality, call)
            delta = self.deltas.get(key)
            if delta is None or delta.shape != output.shape:
                self.masks[key] = self._mask(modality, output)
                delta = self._initial(output, self.masks[key]).requires_grad_(True)
                self.deltas[key] = delta
            return output + delta.to(output.dtype)

        return add

    def project(self, delta: torch.Tensor) -> torch.Tensor:
        """``delta`` moved into each example's epsilon-ball."""
        eps = self.config.epsilon
        if self.config.norm == "linf":
            return delta.clamp(-eps, eps)
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        return delta * (eps / norms).clamp(max=1.0).view((-1,) + (1,) * (delta.dim() - 1))

    def ascend(self) -> None:
        """One projected gradient ascent step on every perturbation, from the gradients of the last backward pass."""
        for key, delta in self.deltas.items():
            grad = delta.grad
            if grad is None:  # the module's output did not reach the loss
                continue
            grad = torch.nan_to_num(grad.detach().float(), nan=0.0, posinf=0.0, neginf=0.0)
            if self.config.norm == "linf":
                step = grad.sign()
            else:
                step = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view((-1,) + (1,) * (grad.dim() - 1))
            moved = self.project((delta.detach() + self.config.step_size * step) * self.masks[key])
            self.deltas[key] = moved.requires_grad_(True)


class EmbeddingAdversary:
    """The FreeLB steps of a training run: built once per run, called for every training batch."""

    def __init__(self, config: AdversarialConfig, model: nn.Module, seed: int, modalities: tuple[str, ...],
                 label: str = "train", process: int = 0) -> None:
        self.config, self.seed, self.process = config, int(seed), int(process)
        modules = embedding_modules(model)
        wanted = config.modalities or [m for m in ("text", "image") if m in modalities]
        missing = [m for m in wanted if m not in modules]
        if missing:
            raise TrainingError(f"{label}: adversarial.modalities names {missing[0]!r}, but the model exposes no "
                                f"{missing[0]} embedding module (it exposes: {', '.join(modules) or 'none'}).")
        self.modules = {m: modules[m] for m in wanted}

    def generator(self, epoch: int, number: int) -> torch.Generator:
        """The generator of one batch's initial perturbation (a pure function of seed, process, epoch, batch number)."""
        key = ((self.seed * 1_000_003 + epoch) * 1_000_033 + number) * 1_009 + self.process
        return torch.Generator().manual_seed(key % (2**63 - 1))

    @contextlib.contextmanager
    def perturbing(self, perturbation: Perturbation):
        """Forward passes inside add ``perturbation`` to the embedding modules' outputs."""
        handles = [module.register_forward_hook(perturbation.hook(modality)) for modality, module in self.modules.items()]
        try:
            yield perturbation
        finally:
            for handle in handles:
                handle.remove()

    def train_step(self, clean_loss: torch.Tensor, batch: dict[str, torch.Tensor],
                   loss_of: Callable[[dict[str, torch.Tensor]], torch.Tensor],
                   backward: Callable[[torch.Tensor], None], defer_sync: Callable[[], Any],
                   epoch: int, number: int) -> Perturbation:
        """Backpropagate the clean loss and the K perturbed losses (each / K); returns the final perturbation.

        ``loss_of(batch)`` is the model's loss (under the run's autocast); ``backward(loss)`` adds its gradient
        as the trainer does (accumulation weight, gradient scaler); ``defer_sync()`` is the context that keeps
        the gradients of all but the last backward pass local (distributed data parallel).
        """
        steps = self.config.steps
        perturbation = Perturbation(self.config, self.generator(epoch, number), batch.get("attention_mask"))
        with defer_sync():
            backward(clean_loss)
        with self.perturbing(perturbation):
            for step in range(steps):
                perturbation.begin_pass()
                loss = loss_of(batch) / steps
                with defer_sync() if step < steps - 1 else contextlib.nullcontext():
                    backward(loss)
                if step < steps - 1:
                    perturbation.ascend()
        return perturbation
