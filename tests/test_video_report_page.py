"""The report page: every run leaves ``OUT/index.html``, a page of the batch that a browser opens from disk —
failures first, a card per file (poster, strip, sprite scrubber, facts, links), the stage table and charts.

The page's data is read back from its files here; the ``browser`` tests load it in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.browser import chromium, console_errors, open_page
from support.clips import BROKEN, CLIPS

from pipeline import RunResult, run
from pipeline.observe.report_page import CARDS_DIR, PAGE_NAME


@pytest.fixture(scope="module")
def report(clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The default preset over the clips, pictures every 0.5 s and sprite tiles every 0.25 s (a scrubber of
    several tiles on every clip)."""
    from stages import presets

    out = tmp_path_factory.mktemp("report") / "out"
    return run(presets.default(thumb_every=0.5, thumb_width=160, sprite_every=0.25, sprite_width=96), clip_dir,
               out, workers=2, cache=False)


def page_data(out: Path) -> dict[str, Any]:
    """The JSON the page embeds (summary and one entry per file)."""
    text = (out / PAGE_NAME).read_text(encoding="utf-8")
    match = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', text, re.S)
    assert match, "the page embeds no data"
    return json.loads(match.group(1))


def cards(out: Path) -> dict[str, dict[str, Any]]:
    """Every file's card, read from the page's card files, by file name."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((out / CARDS_DIR).glob("cards-*.js")):
        text = path.read_text(encoding="utf-8")
        body = re.fullmatch(r"framepipeCards\(\d+,(.*)\);\n", text, re.S)
        assert body, path
        found.update({c["name"]: c for c in json.loads(body.group(1))})
    return found


def test_every_run_leaves_a_page_with_each_file_and_the_failure_first(report: RunResult) -> None:
    data = page_data(report.out_dir)
    names = [f[0] for f in data["files"]]
    assert sorted(names) == sorted([*CLIPS, BROKEN])
    summary = data["summary"]
    assert (summary["files"], summary["ok"], summary["failed"]) == (5, 4, 1)
    assert summary["bottleneck"].startswith("bottleneck: ")
    (failed,) = [f for f in data["files"] if f[1] == "failed"]
    assert failed[0] == BROKEN and failed[2] == report.failed[0].error and failed[3] == "metadata"
    assert failed[4].endswith(BROKEN)
    html = (report.out_dir / PAGE_NAME).read_text(encoding="utf-8")
    assert html.index('id="failures"') < html.index('id="cards"') < html.index("<h2>Stages</h2>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(["']?(https?:)?//|@import""", html)  # offline


def test_a_good_files_card_shows_its_pictures_scrubber_facts_and_proxy(report: RunResult) -> None:
    by_name = cards(report.out_dir)
    card = by_name["landscape_audio.mp4"]
    result = next(r for r in report.files if r.file.relpath == "landscape_audio.mp4")
    assert card["status"] == "ok"
    assert card["poster"] == result.record["poster"]
    assert card["strip"] and all((report.out_dir / s).is_file() and s.endswith(".jpg") for s in card["strip"])
    assert card["poster"] not in card["strip"] and len(card["strip"]) <= 8
    assert len(card["tiles"]) == result.record["sprite_tiles"] >= 4
    from PIL import Image
    for sheet, size in zip(card["sheets"], card["sizes"], strict=True):  # the scrubber scales the sheet it has
        with Image.open(report.out_dir / sheet) as image:
            assert list(image.size) == size
    starts = [t[0] for t in card["tiles"]]
    assert starts == sorted(starts) and starts[0] == 0
    facts = dict(card["facts"])
    assert facts["picture"] == "320 × 180" and facts["duration"] == "3 s" and facts["audio"] == "aac"
    assert card["links"] == [["proxy", result.record["proxy"]]]
    assert (report.out_dir / card["links"][0][1]).is_file()
    assert set(card["outputs"]) == set(result.outputs)
    rotated = by_name["portrait_rot90.mp4"]
    assert "rotated -90" in rotated["flags"]


def test_the_page_covers_files_an_earlier_run_did(clip_dir: Path, tmp_path: Path) -> None:
    from stages import presets

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(clip_dir / "web_vp9.webm", folder)
    out = tmp_path / "out"
    pipeline = presets.thumbnails(thumb_every=1.0)
    run(pipeline, folder, out, workers=1, cache=False)
    shutil.copy(clip_dir / "landscape_audio.mp4", folder)
    run(pipeline, folder, out, workers=1, cache=False)
    data = page_data(out)
    statuses = {f[0]: f[1] for f in data["files"]}
    assert statuses == {"web_vp9.webm": "done", "landscape_audio.mp4": "ok"}
    assert (data["summary"]["done"], data["summary"]["ok"]) == (1, 1)
    assert cards(out)["web_vp9.webm"]["poster"]  # its card as complete as when it ran


def test_framepipe_report_draws_the_page_again_from_the_report(report: RunResult, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(report.out_dir, out)
    before = page_data(out)
    (out / PAGE_NAME).unlink()
    shutil.rmtree(out / CARDS_DIR)
    proc = subprocess.run([sys.executable, "-m", "pipeline", "report", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert page_data(out) == before and cards(out) == cards(report.out_dir)
    assert "<svg" in (out / PAGE_NAME).read_text(encoding="utf-8")  # the charts, from report.json's timeline


def test_framepipe_report_on_a_folder_without_a_report_is_one_clear_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pipeline", "report", str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "no run report in" in proc.stderr and str(tmp_path) in proc.stderr and "Traceback" not in proc.stderr


# In a browser -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


@pytest.mark.browser
def test_the_page_loads_offline_with_every_picture_and_no_console_error(report: RunResult, browser: Any,
                                                                        tmp_path: Path) -> None:
    open_page(browser, report.out_dir / PAGE_NAME)
    shown = browser.execute_script("return [...document.querySelectorAll('article.card')].map(c => c.ariaLabel)")
    assert sorted(shown) == sorted([*CLIPS, BROKEN])
    pictures = browser.execute_script("""
        return Promise.all([...document.querySelectorAll('article.card img')].map(img =>
          img.decode().catch(() => null).then(() => [img.closest('article').ariaLabel, img.alt, img.naturalWidth])));
        """)
    for clip in CLIPS:
        mine = [p for p in pictures if p[0] == clip]
        assert any(alt.startswith("poster of") for _, alt, _ in mine), clip
        assert any(alt.startswith("picture ") for _, alt, _ in mine), clip
        assert all(width > 0 for _, _, width in mine), mine
    assert all(alt for _, alt, _ in pictures)  # every picture says what it is
    assert console_errors(browser) == []
    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.browser
def test_failures_come_first_with_their_reason(report: RunResult, browser: Any) -> None:
    open_page(browser, report.out_dir / PAGE_NAME)
    items = browser.execute_script("return [...document.querySelectorAll('#failures li')].map(li => li.textContent)")
    assert len(items) == 1 and items[0].startswith(BROKEN) and report.failed[0].error in items[0]
    top = browser.execute_script("""return [document.querySelector('#failures').getBoundingClientRect().top,
                                           document.querySelector('#cards').getBoundingClientRect().top]""")
    assert top[0] < top[1]


@pytest.mark.browser
def test_the_scrubber_follows_the_pointer_and_the_keyboard(report: RunResult, browser: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    open_page(browser, report.out_dir / PAGE_NAME)
    media = browser.find_element(By.CSS_SELECTOR, "article.card[aria-label='landscape_audio.mp4'] .media")
    browser.execute_script("arguments[0].scrollIntoView()", media)
    width = media.size["width"]
    shown = []
    for x in (0.05, 0.5, 0.95):
        ActionChains(browser).move_to_element_with_offset(media, int((x - 0.5) * width), 0).perform()
        shown.append((media.get_attribute("data-tile"), browser.execute_script(
            "return arguments[0].querySelector('.tile').style.backgroundPosition", media)))
    tiles = [int(t) for t, _ in shown]
    assert tiles[0] < tiles[1] < tiles[2]
    assert len({position for _, position in shown}) == 3  # a different part of the sheet each time
    assert media.get_attribute("role") == "slider" and media.get_attribute("tabindex") == "0"
    media.send_keys(Keys.HOME)
    assert media.get_attribute("data-tile") == "0"
    media.send_keys(Keys.ARROW_RIGHT)
    assert media.get_attribute("data-tile") == "1" and float(media.get_attribute("aria-valuenow")) > 0
    assert console_errors(browser) == []


@pytest.mark.browser
def test_filter_by_status_and_search_by_name(report: RunResult, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    open_page(browser, report.out_dir / PAGE_NAME)

    def shows(names: list[str]) -> None:
        script = "return [...document.querySelectorAll('article.card')].map(c => c.ariaLabel)"
        WebDriverWait(browser, 60).until(lambda d: d.execute_script(script) == names)

    Select(browser.find_element(By.ID, "status")).select_by_value("failed")
    shows([BROKEN])
    Select(browser.find_element(By.ID, "status")).select_by_value("")
    browser.find_element(By.ID, "search").send_keys("VP9")
    shows(["web_vp9.webm"])
    assert console_errors(browser) == []
