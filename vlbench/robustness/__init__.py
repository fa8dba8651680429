"""Evaluation suites of robustness: ImageNet-C-style corruptions, question perturbations and a PGD attack.

See docs/robustness.md. The suites score a trained model's test split again under each condition
(:func:`vlbench.robustness.suite.robustness_block`); ``vlbench run --robustness`` runs them after testing and
``vlbench robustness RUN_DIR`` on finished runs that kept their weights (``--keep-model``).
"""

from vlbench.robustness.suite import SUITES, robustness_block

__all__ = ["SUITES", "robustness_block"]
