"""The report page, engine only: what a card shows comes from the report columns stages tag (``card_field``),
cards are paged into files of their own, and file names are text on the page, never markup."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.browser import chromium, console_errors, open_page
from support.text import text_pipeline, write_texts

from pipeline import FILE, Pipeline, Stage, StageContext, run, write_atomic
from pipeline.observe import card_field
from pipeline.observe.report import base_fields
from pipeline.observe.report_page import CARDS_DIR, CARDS_PER_PAGE, PAGE_NAME, NoReport, write_report_page

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000002000000010806000000f478d4fa0000001049444154789c63f8cf"
                    "c0f09f010006fe02fedd6d8f900000000049454e44ae426082")  # 2x1 pixels


def page_data(out: Path) -> dict[str, Any]:
    text = (out / PAGE_NAME).read_text(encoding="utf-8")
    match = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', text, re.S)
    assert match
    return json.loads(match.group(1))


def card_files(out: Path) -> list[Path]:
    return sorted((out / CARDS_DIR).glob("cards-*.js"))


def cards(out: Path) -> list[dict[str, Any]]:
    found = []
    for path in card_files(out):
        body = re.fullmatch(r"framepipeCards\(\d+,(.*)\);\n", path.read_text(encoding="utf-8"), re.S)
        assert body
        found += json.loads(body.group(1))
    return found


class Pictures(Stage):
    """Writes a poster, a second picture, a sheet of two tiles with its WebVTT, and tags them for the card."""

    accepts = (FILE,)
    report_fields = (card_field("cover", pa.string(), "poster"), card_field("scrub", pa.string(), "scrubber"),
                     card_field("clip", pa.string(), "link", "the clip"), card_field("length", pa.float64(), "fact",
                                                                                      "length", "s"),
                     card_field("w", pa.int32(), "fact", "size"), card_field("h", pa.int32(), "fact", "size"),
                     card_field("odd", pa.bool_(), "flag", "ODD"), card_field("turn", pa.int32(), "flag", "turned"),
                     pa.field("hidden", pa.string()))

    def process(self, item: Any, ctx: StageContext) -> None:
        made = {}
        for name, data in (("cover.png", PNG), ("other.png", PNG), ("sheet.png", PNG), ("clip.bin", b"x"),
                           ("tiles.vtt", b"WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nsheet.png#xywh=0,0,1,1\n\n"
                                         b"00:00:01.500 --> 00:00:03.000\nsheet.png#xywh=1,0,1,1\n")):
            path = write_atomic(ctx.output_path("pics", name), data)
            ctx.add_output(path)
            made[name] = ctx.run.outputs[-1]
        ctx.record(cover=made["cover.png"], scrub=made["tiles.vtt"], clip=made["clip.bin"], length=3.25, w=640,
                   h=360, odd=True, turn=0, hidden="not on the card")


def test_a_card_shows_what_the_stages_tagged(tmp_path: Path) -> None:
    write_texts(tmp_path / "in", {"a.txt": "x"})
    p = Pipeline("pictures", extensions=[".txt"])
    p.add(Pictures())
    result = run(p, tmp_path / "in", tmp_path / "out", executor="inline", cache=False)
    (card,) = cards(result.out_dir)
    rec = result.files[0].record
    assert card["poster"] == rec["cover"]
    assert card["strip"] == [rec["cover"].replace("cover", "other")]  # pictures other than the poster and sheets
    assert card["sheets"] == [rec["cover"].replace("cover", "sheet")] and card["sizes"] == [[2, 1]]
    assert card["tiles"] == [[0, 1.5, 0, 0, 0, 1, 1], [1.5, 3, 0, 1, 0, 1, 1]]
    assert card["links"] == [["the clip", rec["clip"]]]
    assert card["facts"][:2] == [["file size", "1 bytes"], ["length", "3.25 s"]]
    assert ["size", "640 × 360"] in card["facts"]
    assert card["flags"] == ["ODD"]  # a flag of 0 is not shown
    assert "not on the card" not in json.dumps(card)


def test_card_roles_are_checked() -> None:
    with pytest.raises(ValueError, match="card role 'thumbnail' is not one of"):
        card_field("x", pa.string(), "thumbnail")


def test_many_files_are_paged_and_a_shorter_report_drops_the_pages_it_no_longer_has(tmp_path: Path) -> None:
    n = CARDS_PER_PAGE * 2 + 5
    write_texts(tmp_path / "in", {f"f{i:03d}.txt": "a\nb" for i in range(n)})
    run(text_pipeline(), tmp_path / "in", tmp_path / "out", executor="inline", cache=False)
    assert len(card_files(tmp_path / "out")) == 3
    assert [c["name"] for c in cards(tmp_path / "out")] == [f"f{i:03d}.txt" for i in range(n)]
    assert len(page_data(tmp_path / "out")["files"]) == n
    for extra in list((tmp_path / "in").iterdir())[5:]:
        extra.unlink()
    run(text_pipeline(), tmp_path / "in", tmp_path / "out", executor="inline", cache=False, resume=False)
    assert len(card_files(tmp_path / "out")) == 1 and len(cards(tmp_path / "out")) == 5


HOSTILE = ["<!--<script>x.txt", "<img src=x onerror=alert(1)>.txt", "a\u2028b.txt"]


def test_file_names_stay_text_in_the_page(tmp_path: Path) -> None:
    write_texts(tmp_path / "in", {name: "boom" if "img" in name else "ok" for name in HOSTILE})
    run(text_pipeline(), tmp_path / "in", tmp_path / "out", executor="inline", cache=False)
    html = (tmp_path / "out" / PAGE_NAME).read_text(encoding="utf-8")
    assert "<img src=x" not in html and "<!--<script>" not in html
    assert sorted(f[0] for f in page_data(tmp_path / "out")["files"]) == sorted(HOSTILE)


def test_no_report_is_its_own_error(tmp_path: Path) -> None:
    with pytest.raises(NoReport, match=f"no run report in {re.escape(str(tmp_path))}"):
        write_report_page(tmp_path)


def ten_thousand_files(out: Path) -> Path:
    """A report of 10,000 files (every 10th failed), written as a run writes it, and its page drawn."""
    rows = [{"path": f"/in/f{i:05d}.mp4", "relpath": f"f{i:05d}.mp4", "status": "failed" if i % 10 == 0 else "ok",
             "error": "[decode] broken" if i % 10 == 0 else None, "failed_stage": "decode" if i % 10 == 0 else None,
             "size_bytes": 1000 + i, "outputs": [], "warnings": [], "wall_s": 0.5} for i in range(10_000)]
    out.mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(base_fields())), out / "report.parquet")
    return write_report_page(out)


def test_ten_thousand_files_open_a_bounded_page(tmp_path: Path) -> None:
    page = ten_thousand_files(tmp_path / "out")
    assert page.stat().st_size < 2_000_000  # the index of every file, not its cards
    assert len(card_files(tmp_path / "out")) == -(-10_000 // CARDS_PER_PAGE)
    assert page_data(tmp_path / "out")["summary"]["failed"] == 1000


# In a browser -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


@pytest.mark.browser
def test_hostile_names_show_as_names(tmp_path: Path, browser: Any) -> None:
    write_texts(tmp_path / "in", {name: "boom" if "img" in name else "ok" for name in HOSTILE})
    run(text_pipeline(), tmp_path / "in", tmp_path / "out", executor="inline", cache=False)
    open_page(browser, tmp_path / "out" / PAGE_NAME)  # an alert() run by a name would fail this call
    titles = browser.execute_script("return [...document.querySelectorAll('article.card h3')].map(h => h.textContent)")
    assert sorted(titles) == sorted(HOSTILE)
    failure = browser.execute_script("return document.querySelector('#failures li strong').textContent")
    assert failure == HOSTILE[1]
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    assert console_errors(browser) == []


@pytest.mark.browser
def test_ten_thousand_files_show_a_page_at_a_time(tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, ten_thousand_files(tmp_path / "out"))
    shown = "return [...document.querySelectorAll('article.card h3')].map(h => h.textContent)"
    assert browser.execute_script(shown) == [f"f{i:05d}.mp4" for i in range(CARDS_PER_PAGE)]
    assert browser.execute_script("return document.querySelectorAll('#failures li').length") == 100
    browser.find_element(By.ID, "more-failures").click()
    assert browser.execute_script("return document.querySelectorAll('#failures li').length") == 1000
    browser.find_element(By.ID, "search").send_keys("f09999")
    WebDriverWait(browser, 60).until(lambda d: d.execute_script(shown) == ["f09999.mp4"])
    assert console_errors(browser) == []
