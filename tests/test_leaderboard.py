"""The static leaderboard page: built from records, opened from a file URL in a real headless chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.results_fixtures import make_record, write_record
from tests.system_packages import CHROMIUM_APT, chromium_paths, require_system
from vlbench.cli.main import main

HOSTILE = "<img src=x onerror=alert(1)><script>alert(2)</script>|x"


def _records(folder: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    levels = {"text-bert": 0.45, "vilt": 0.8, "film": 0.7, HOSTILE: 0.6}
    for i, (name, level) in enumerate(levels.items()):
        for seed in (0, 1, 2):
            items = {str(k): float(rng.random() < level) for k in range(120)}
            write_record(folder, make_record(name, seed, items, config_hash=f"{i + 1:016x}", trainable=10 ** (3 + i),
                                             ablation=(40.0, 45.0) if name != "text-bert" else None,
                                             history=[30.0 + 10 * level, 40.0 + 30 * level, 45.0 + 35 * level]),
                         name=f"b{i}")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    runs, out = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("site")
    _records(runs)
    assert main(["leaderboard", str(runs), "--out", str(out)]) == 0
    return out / "index.html"


def test_page_is_self_contained(site):
    page = site.read_text()
    assert page.count("<script>") == 1 and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page and page.count("<svg") == 3  # bars, params scatter, validation curves
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert "Δ accuracy vs text-bert" in page and "image reliance" in page


def _chrome():
    found = chromium_paths()
    require_system(found is not None, "chromium with chromedriver", CHROMIUM_APT)
    chromium, driver = found
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1400"):
        options.add_argument(flag)
    return options, Service(driver)


def test_in_headless_chromium(site, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.common.by import By

    options, service = _chrome()
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    browser = webdriver.Chrome(options=options, service=service)
    try:
        browser.get(site.as_uri())
        assert browser.title == "vlbench leaderboard"
        table = browser.find_element(By.CSS_SELECTOR, "table.sortable")

        def order():
            return [row.find_elements(By.TAG_NAME, "td")[0].text for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]

        before = order()
        header = next(th for th in table.find_elements(By.TAG_NAME, "th") if th.text.strip() == "accuracy")
        header.click()
        ascending = order()
        header.click()
        descending = order()
        assert ascending != before or descending != before
        assert descending == list(reversed(ascending)) and descending[0] == "vilt" and ascending[0] == "text-bert"
        # the hostile name is text in a cell, and nothing it contains ran
        assert HOSTILE in before
        assert browser.execute_script("return document.querySelectorAll('img').length") == 0
        assert browser.execute_script("return document.querySelectorAll('script').length") == 1
        assert not [log for log in browser.get_log("browser") if "alert" in log.get("message", "")]
        shot = tmp_path / "leaderboard.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        keep = Path(__file__).resolve().parent.parent / ".pytest_cache" / "leaderboard.png"
        keep.parent.mkdir(exist_ok=True)
        shutil.copy(shot, keep)  # for a person to look at after the run
    finally:
        browser.quit()


@pytest.mark.parametrize("ci, outcome", [("", pytest.skip.Exception), ("true", pytest.fail.Exception)])
def test_a_missing_system_package_skips_outside_ci_and_fails_under_it(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match=r"chromium with chromedriver is not installed \(apt-get install chromium"):
        require_system(False, "chromium with chromedriver", CHROMIUM_APT)
    require_system(True, "chromium with chromedriver", CHROMIUM_APT)  # present: neither
