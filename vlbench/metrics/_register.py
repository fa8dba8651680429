"""``register_metric`` for the metric modules, imported after the built-in lazy registrations.

``vlbench.builtins`` adds lazy ``"module:function"`` entries for some of these metrics. The registry
replaces a lazy entry when the real object registers, but refuses a lazy entry added after the object,
so the built-ins are imported first here to make the order always lazy-then-object.
"""

import vlbench.builtins  # noqa: F401
from vlbench.registry import register_metric

__all__ = ["register_metric"]
