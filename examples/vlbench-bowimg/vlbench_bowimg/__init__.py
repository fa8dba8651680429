"""vlbench-bowimg: an example third-party vlbench plugin (the BOWIMG VQA baseline).

The entry point imports ``vlbench_bowimg.model``, which registers the model type with ``@register_model``
and adds the spec folder; ``--plugin path/to/model.py`` loads that same file.
"""
