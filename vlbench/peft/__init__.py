"""Parameter-efficient fine-tuning for any baseline through its spec's ``peft:`` block.

Methods: ``lora`` and ``prompt`` (through the ``peft`` library), ``adapter`` (Houlsby / Pfeiffer bottleneck
adapters), ``bitfit`` (biases only) and ``frozen`` (head only, on cached features). The task head always
trains; PEFT runs save only their trained weights (safetensors) next to the run record.
"""

from vlbench.peft.apply import PeftSummary, apply_peft, trained_state
from vlbench.peft.checkpoint import load_run_model, load_trained_weights, save_trained_weights, weights_path
from vlbench.peft.config import METHODS, parse_peft

__all__ = [
    "METHODS",
    "parse_peft",
    "apply_peft",
    "PeftSummary",
    "trained_state",
    "weights_path",
    "save_trained_weights",
    "load_trained_weights",
    "load_run_model",
]
