"""Executing runs: the sweep over a request's planned runs (``sweep``) and one run's training and scoring (``one_run``).

Planning (what runs, with which config, record path and hash) lives in :mod:`vlbench.plan`, records in
:mod:`vlbench.results.records`; the names below are re-exported so ``vlbench.runner`` stays the one import
for running a task.
"""

from vlbench.data.loading import load_dataset, split_dataset_arg
from vlbench.plan import RunRequest, select_baselines
from vlbench.runner.one_run import TokenizerCache
from vlbench.runner.sweep import RunOutcome, run_task

__all__ = ["RunRequest", "RunOutcome", "select_baselines", "split_dataset_arg", "load_dataset", "run_task",
           "TokenizerCache"]
