"""Registry behaviour: decorators, lazy entries, did-you-mean, and both plugin routes."""

from __future__ import annotations

import sys
import textwrap

import pytest

from vlbench.errors import UnknownNameError, VLBenchError
from vlbench.registry import MODELS, Registry, did_you_mean, load_entry_point_plugins, load_plugin_file


def test_decorator_registers_and_describes():
    reg: Registry = Registry("widget")

    @reg.register("blue-widget")
    class Blue:
        """A blue widget."""

    assert reg.get("blue-widget") is Blue
    assert reg.entry("blue-widget").description == "A blue widget."
    assert reg.names() == ["blue-widget"]


def test_unknown_name_suggests_the_closest():
    reg: Registry = Registry("widget")
    reg.add("text-bert", object())
    reg.add("vilt", object())
    with pytest.raises(UnknownNameError) as info:
        reg.get("text-bret")
    message = str(info.value)
    assert "Unknown widget 'text-bret'" in message and "Did you mean 'text-bert'" in message
    assert did_you_mean("zzzz", ["vilt"]) == ""


def test_duplicate_registration_is_refused_unless_overridden():
    reg: Registry = Registry("widget")
    reg.add("a", 1)
    with pytest.raises(VLBenchError):
        reg.add("a", 2)
    reg.add("a", 2, override=True)
    assert reg.get("a") == 2


def test_lazy_entry_imports_on_first_use_and_yields_to_the_decorator():
    reg: Registry = Registry("thing")
    reg.add("ordered", "collections:OrderedDict", description="lazy")
    from collections import OrderedDict

    assert reg.get("ordered") is OrderedDict
    reg2: Registry = Registry("thing")
    reg2.add("x", "json:dumps")
    with pytest.raises(VLBenchError, match="already registered"):
        reg2.add("x", len)  # an object from elsewhere may not take over the lazy pointer's name
    from json import dumps

    reg2.add("x", dumps)  # the real registration (its module registering it) replaces the lazy pointer
    assert reg2.get("x") is dumps and reg2.entry("x").description == ""


def test_plugin_file_registers_a_model(tmp_path):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(
        textwrap.dedent(
            """
            from vlbench.registry import register_model

            @register_model("plugin-file-model")
            class PluginModel:
                '''Registered from a file.'''
            """
        )
    )
    load_plugin_file(plugin)
    assert MODELS.get("plugin-file-model").__name__ == "PluginModel"
    with pytest.raises(VLBenchError, match="does not exist"):
        load_plugin_file(tmp_path / "missing.py")
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(VLBenchError, match="boom"):
        load_plugin_file(broken)


def test_entry_point_plugin_is_loaded(tmp_path, monkeypatch):
    (tmp_path / "ep_plugin_mod.py").write_text(
        "from vlbench.registry import register_model\n"
        "@register_model('entry-point-model')\n"
        "class EPModel:\n    '''From an entry point.'''\n"
    )
    dist = tmp_path / "ep_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[vlbench.plugins]\nep = ep_plugin_mod\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_entry_point_plugins()
    assert "ep" in loaded
    assert MODELS.get("entry-point-model").__name__ == "EPModel"
    sys.modules.pop("ep_plugin_mod", None)


def test_lazy_entry_after_the_real_object_is_ignored():
    reg: Registry = Registry("thing")
    reg.add("x", len, description="real")
    reg.add("x", "json:dumps", description="lazy")
    assert reg.get("x") is len and reg.entry("x").description == "real"
