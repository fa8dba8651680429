"""vlbench: a benchmark harness for joint image+text fine-tuning against text-only baselines."""

__version__ = "0.1.0"
