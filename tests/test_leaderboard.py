"""The static leaderboard page: built from records, opened from a file URL in a real headless chromium.

At a 1280-pixel window every column of every table can be scrolled into view (not under the held first
column), and no two labels of a plot overlap; checked on a fixture page and on the published page.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.results_fixtures import make_record, write_record
from tests.system_packages import CHROMIUM_APT, chromium_paths, require_system
from vlbench.cli.main import main

HOSTILE = "<img src=x onerror=alert(1)><script>alert(2)</script>|x"
ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "results" / "site" / "index.html"
# more metrics than fit a 1280-pixel window, as captioning and retrieval have
EXTRA_METRICS = [f"recall_at_{k}/long-metric-name" for k in range(1, 15)]


def _records(folder: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    levels = {"text-bert": 0.45, "vilt": 0.8, "film": 0.7, HOSTILE: 0.6}
    for i, (name, level) in enumerate(levels.items()):
        for seed in (0, 1, 2):
            items = {str(k): float(rng.random() < level) for k in range(120)}
            record = make_record(name, seed, items, config_hash=f"{i + 1:016x}", trainable=10 ** (3 + i),
                                 ablation=(40.0, 45.0) if name != "text-bert" else None,
                                 history=[30.0 + 10 * level, 40.0 + 30 * level, 45.0 + 35 * level])
            record["test"]["metrics"].update({m: 100 * level + k for k, m in enumerate(EXTRA_METRICS)})
            write_record(folder, record, name=f"b{i}")


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


def _chrome(width: int = 1400):
    found = chromium_paths()
    require_system(found is not None, "chromium with chromedriver", CHROMIUM_APT)
    chromium, driver = found
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--window-size={width},1400"):
        options.add_argument(flag)
    return options, Service(driver)


def test_in_headless_chromium(site, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.common.by import By

    browser = _browser(tmp_path)
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


def _browser(tmp_path, width: int = 1400):
    from selenium import webdriver

    options, service = _chrome(width)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    return webdriver.Chrome(options=options, service=service)


# For each table: scroll its last header cell into view inside the table's box, then report where it is, where the
# held first column ends, and which element is drawn at the cell's centre.
_LAST_COLUMNS = """
return Array.from(document.querySelectorAll('table.sortable')).map(function(table){
  var cells = table.rows[0].cells, last = cells[cells.length - 1], first = table.rows[1].cells[0];
  last.scrollIntoView({block: 'center', inline: 'end'});
  var r = last.getBoundingClientRect(), f = first.getBoundingClientRect();
  var hit = document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2);
  return {name: last.textContent, left: r.left, right: r.right, width: r.width, firstLeft: f.left,
          firstRight: f.right, scrolled: table.parentElement.scrollLeft, hit: hit === last || last.contains(hit),
          window: document.documentElement.clientWidth, pageWidth: document.documentElement.scrollWidth};
});
"""


def _pages(site):
    return [site] + ([PUBLISHED] if PUBLISHED.is_file() else [])


def test_every_column_is_reachable_at_1280_pixels(site, tmp_path):
    browser = _browser(tmp_path, 1280)
    try:
        for n, page in enumerate(_pages(site)):
            browser.get(page.as_uri())
            assert browser.execute_script("return window.innerWidth") == 1280
            found = browser.execute_script(_LAST_COLUMNS)
            assert found, page
            assert any(t["scrolled"] > 0 for t in found)  # a table wider than the window: reached by scrolling it
            for t in found:
                assert t["pageWidth"] <= t["window"], t  # only the table's own box scrolls, not the page
                assert t["width"] > 0 and 0 <= t["left"] and t["right"] <= t["window"] + 0.5, t  # inside the window
                assert t["left"] >= t["firstRight"] - 0.5 and t["hit"], t  # not under the held first column
                assert t["firstLeft"] >= 0, t  # the baseline column stayed in view
            shot = tmp_path / f"page-{n}-1280.png"
            assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
            keep = ROOT / ".pytest_cache" / f"leaderboard-1280-{n}.png"
            keep.parent.mkdir(exist_ok=True)
            shutil.copy(shot, keep)  # for a person to look at after the run
    finally:
        browser.quit()


# Every drawn text of every plot: its box on the screen, and the plot's box.
_PLOT_LABELS = """
return Array.from(document.querySelectorAll('svg')).map(function(svg){
  var box = svg.getBoundingClientRect();
  return {plot: svg.querySelector('title').textContent, box: [box.left, box.top, box.right, box.bottom],
          labels: Array.from(svg.querySelectorAll('text')).map(function(t){
            var r = t.getBoundingClientRect();
            return [t.textContent, r.left, r.top, r.right, r.bottom];
          })};
});
"""


def _overlap(a, b) -> bool:
    return min(a[3], b[3]) - max(a[1], b[1]) > 0.5 and min(a[4], b[4]) - max(a[2], b[2]) > 0.5


def _crowded_records(folder: Path) -> None:
    """Twelve baselines: pairs with equal parameters and nearly equal scores, long names, 30 epochs of validation."""
    import numpy as np

    rng = np.random.default_rng(1)
    for i in range(12):
        name = "text-bert" if i == 0 else f"retrieval-two-stage-variant-{i}"
        level = 0.5 + 0.02 * (i // 2)
        for seed in (0, 1):
            items = {str(k): float(rng.random() < level) for k in range(60)}
            history = [40.0 + level * 40 * (1 - 0.9 ** e) for e in range(1, 31)]
            write_record(folder, make_record(name, seed, items, config_hash=f"{i + 1:016x}",
                                             trainable=10 ** (4 + i // 2), history=history), name=f"c{i}")


def test_plot_labels_do_not_overlap(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "site"
    _crowded_records(runs)
    assert main(["leaderboard", str(runs), "--out", str(out)]) == 0
    browser = _browser(tmp_path, 1280)
    try:
        for page in [out / "index.html"] + ([PUBLISHED] if PUBLISHED.is_file() else []):
            browser.get(page.as_uri())
            plots = browser.execute_script(_PLOT_LABELS)
            assert len(plots) >= 3, page
            for plot in plots:
                left, top, right, bottom = plot["box"]
                labels = [x for x in plot["labels"] if x[3] > x[1]]
                assert len(labels) >= 4, plot["plot"]
                for x in labels:  # each label lies inside its plot
                    assert left - 0.5 <= x[1] and x[3] <= right + 0.5 and top - 0.5 <= x[2] and x[4] <= bottom + 0.5, (page, x)
                clashes = [(a[0], b[0]) for i, a in enumerate(labels) for b in labels[i + 1:] if _overlap(a, b)]
                assert not clashes, (page.name, plot["plot"], clashes)
    finally:
        browser.quit()
