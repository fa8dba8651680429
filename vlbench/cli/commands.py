"""Imports every command module so that each attaches its commands to the Typer apps."""

from vlbench.cli import data as _data  # noqa: F401
from vlbench.cli import listing as _listing  # noqa: F401
from vlbench.cli import run as _run  # noqa: F401
from vlbench.cli import score as _score  # noqa: F401
from vlbench.cli import table as _table  # noqa: F401
from vlbench.cli import protocols as _protocols  # noqa: F401
from vlbench.cli import pretrained as _pretrained  # noqa: F401
from vlbench.cli import robustness as _robustness  # noqa: F401
