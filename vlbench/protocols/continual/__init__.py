"""Continual learning: one model trained on a sequence of stages, scored on every stage after each one."""
