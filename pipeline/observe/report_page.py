"""``write_report_page``: ``OUT/index.html``, the run to look at in a browser.

The page is a view of what the report already holds — ``report.parquet`` (a row per file, resumed ones
included), ``stages.parquet`` and ``report.json`` (wall time, bottleneck, the timeline behind the charts) — so
``framepipe report OUT`` draws it again at any time. The engine knows nothing of video: what a file's card shows
comes from the report's columns, each tagged by the stage that declared it (``card_field``): a poster picture,
a WebVTT of sprite tiles that the pointer scrubs through, a link to an output, a fact, a flag. The pictures
among a file's outputs make its strip.

Self-contained and offline: one HTML file with its style, script and charts (inline SVG); the cards' details
sit in ``index_files/cards-NNNN.js``, one per page of cards, loaded when the reader turns to it (a script tag
works from ``file://``, ``fetch`` does not), so that 10,000 files open as fast as fifty.

A card reads a few of the outputs it shows (a WebVTT, the headers of its sprite sheets). A run into an OUT on
object storage draws the page in its local stand-in for OUT, where the outputs are not (the workers put them at
their URLs): ``outputs_at`` names OUT's URL, and those reads go there (``storage.open_input``, a few ranged reads
each, in threads).
"""

from __future__ import annotations

import html
import io
import json
import os
import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import quote

from ..errors import FramepipeError
from ..outputs import no_follow, write_atomic
from .report import CARD_KEY, REPORT_NAMES

__all__ = ["PAGE_NAME", "CARDS_PER_PAGE", "write_report_page", "NoReport"]

PAGE_NAME = "index.html"
CARDS_DIR = "index_files"
CARDS_PER_PAGE = 48
_PICTURES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".avif")
_STRIP = 8  # pictures in a card's strip, evenly chosen among its outputs
_OUTPUT_LINKS = 200  # outputs listed on one card
_CUE = re.compile(r"^\s*(?:(\d+):)?(\d{1,2}):(\d{2})\.(\d{3})\s+-->\s+(?:(\d+):)?(\d{1,2}):(\d{2})\.(\d{3})")
_XYWH = re.compile(r"^(.+?)#xywh=(\d+),(\d+),(\d+),(\d+)\s*$")
_READS_AT_ONCE = 16  # cards drawn at once when their outputs are read from object storage


class NoReport(FramepipeError):
    """The folder holds no run report to draw a page from."""


def write_report_page(out_dir: str | os.PathLike[str], *, outputs_at: str | None = None) -> Path:
    """Draw ``OUT/index.html`` (and its ``index_files``) from the report in ``out_dir``; return the page's path.
    ``NoReport`` when no run wrote a report there. ``outputs_at``: the URL where the outputs are (OUT on object
    storage, ``out_dir`` its local stand-in); None, in ``out_dir``."""
    out = Path(out_dir)
    data = _load(out)
    if outputs_at is None:
        cards = [_card(out, row, data["roles"]) for row in data["rows"]]
    else:
        with ThreadPoolExecutor(_READS_AT_ONCE, thread_name_prefix="framepipe-page") as pool:
            cards = list(pool.map(lambda row: _card(out, row, data["roles"], outputs_at), data["rows"]))
    pages = [cards[i:i + CARDS_PER_PAGE] for i in range(0, len(cards), CARDS_PER_PAGE)]
    folder = out / CARDS_DIR
    names = set()
    for n, page in enumerate(pages, 1):
        name = f"cards-{n:04d}.js"
        names.add(name)
        write_atomic(folder / name, f"framepipeCards({n},{_json(page)});\n".encode())
    if folder.is_dir() and not folder.is_symlink():  # pages of an earlier, longer report go
        for old in folder.glob("cards-*.js"):
            if old.name not in names:
                old.unlink(missing_ok=True)
    index = [[c["name"], c["status"], c.get("error"), c.get("stage"), c["path"]] for c in cards]
    page_data = {"summary": _summary(data, cards), "files": index, "per_page": CARDS_PER_PAGE,
                 "dir": CARDS_DIR}
    body = _template().replace("@@TITLE@@", html.escape(f"framepipe: {data['doc'].get('pipeline', 'run')} "
                                                          f"in {out.name}"))
    body = body.replace("@@STAGES@@", _stage_table(data["stages"]))
    body = body.replace("@@CHARTS@@", _charts(data["doc"]))
    body = body.replace("@@DATA@@", _json(page_data).replace("<", "\\u003c"))  # no markup inside the script
    return write_atomic(out / PAGE_NAME, body.encode())


# Reading the report --------------------------------------------------------------------------------------


def _load(out: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq
    try:
        table = pq.read_table(out / REPORT_NAMES[0])
    except (OSError, ValueError) as exc:  # missing or not Parquet
        raise NoReport(f"no run report in {out}: {REPORT_NAMES[0]} cannot be read ({exc})") from exc
    try:
        stages = pq.read_table(out / REPORT_NAMES[1]).to_pylist()
    except (OSError, ValueError):
        stages = []
    try:
        with open(out / REPORT_NAMES[2], "rb", opener=no_follow) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        doc = {}
    roles: dict[str, tuple[str, str, str]] = {}
    for f in table.schema:
        raw = (f.metadata or {}).get(CARD_KEY)
        if raw:
            role, label, unit = json.loads(raw)
            roles[f.name] = (role, label, unit)
    return {"rows": table.to_pylist(), "stages": stages, "doc": doc if isinstance(doc, dict) else {},
            "roles": roles}


def _card(out: Path, row: Mapping[str, Any], roles: Mapping[str, tuple[str, str, str]],
          outputs_at: str | None = None) -> dict[str, Any]:
    status = row.get("status") or "failed"
    kind = "failed" if status != "ok" else "done" if row.get("resumed") else "cached" if row.get("replayed") else "ok"
    card: dict[str, Any] = {"name": row.get("relpath") or row.get("path"), "path": row.get("path"), "status": kind}
    if status != "ok":
        card["error"] = row.get("error") or status
        card["stage"] = row.get("failed_stage")
    outputs = [o for o in row.get("outputs") or [] if _inside(o)]
    facts: dict[str, list[str]] = {}
    flags: list[str] = []
    links: list[list[str]] = []
    sheets: list[str] = []
    for column, (role, label, unit) in roles.items():
        value = row.get(column)
        if value is None or value == "":
            continue
        if role == "poster" and isinstance(value, str) and _inside(value) and "poster" not in card:
            card["poster"] = _url(value)
        elif role == "scrubber" and isinstance(value, str) and _inside(value) and "tiles" not in card:
            scrub = _scrubber(out, value, outputs_at)
            if scrub:
                card.update(scrub)
                sheets = scrub["sheets"]
        elif role == "link" and isinstance(value, str) and _inside(value):
            links.append([label, _url(value)])
        elif role == "fact":
            facts.setdefault(label, []).append(_size(value) if unit == "bytes" else
                                               _format(value) + (f" {unit}" if unit else ""))
        elif role == "flag" and value is not False and value != 0:
            flags.append(label if value is True or value == 1 else f"{label} {_format(value)}")
    pictures = [_url(o) for o in outputs if o.lower().endswith(_PICTURES)]
    pictures = [p for p in pictures if p != card.get("poster") and p not in sheets]
    if len(pictures) > _STRIP:
        pictures = [pictures[round(i * (len(pictures) - 1) / (_STRIP - 1))] for i in range(_STRIP)]
    card.update(strip=pictures, facts=[[k, " × ".join(v)] for k, v in facts.items()], flags=flags, links=links,
                outputs=[_url(o) for o in outputs[:_OUTPUT_LINKS]], more_outputs=max(0, len(outputs) - _OUTPUT_LINKS),
                warnings=list(row.get("warnings") or []), wall_s=row.get("wall_s"))
    return card


def _scrubber(out: Path, vtt: str, outputs_at: str | None = None) -> dict[str, Any] | None:
    """The tiles of a sprite WebVTT: ``sheets`` (URLs), ``tiles`` (start s, end s, sheet, x, y, w, h) and
    each sheet's size as the tiles span it (``sizes``); None when it cannot be read."""
    try:
        with _output(out, vtt, outputs_at) as f:
            lines = f.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    base = posixpath.dirname(vtt)
    sheets: dict[str, int] = {}
    tiles: list[list[float]] = []
    for i, line in enumerate(lines[:-1]):
        cue = _CUE.match(line)
        ref = _XYWH.match(lines[i + 1].strip()) if cue else None
        if cue is None or ref is None:
            continue
        g = cue.groups("0")
        start = int(g[0]) * 3600 + int(g[1]) * 60 + int(g[2]) + int(g[3]) / 1000
        end = int(g[4]) * 3600 + int(g[5]) * 60 + int(g[6]) + int(g[7]) / 1000
        sheet = posixpath.normpath(posixpath.join(base, ref.group(1)))
        if not _inside(sheet):
            continue
        index = sheets.setdefault(sheet, len(sheets))  # by its path in OUT
        tiles.append([round(start, 3), round(end, 3), index, *map(int, ref.groups()[1:])])
    if not tiles:
        return None
    sizes = [_picture_size(out, sheet, outputs_at) or [0, 0] for sheet in sheets]
    for t in tiles:  # a sheet that cannot be read: as large as its tiles reach
        s = sizes[int(t[2])]
        s[0], s[1] = max(s[0], int(t[3] + t[5])), max(s[1], int(t[4] + t[6]))
    return {"sheets": [_url(sheet) for sheet in sheets], "sizes": sizes, "tiles": tiles}


def _picture_size(out: Path, relpath: str, outputs_at: str | None = None) -> list[int] | None:
    """A picture's width and height from its header (a sheet may be wider than its tiles: a grid not filled)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with _output(out, relpath, outputs_at) as f, Image.open(f) as image:
            return [int(image.width), int(image.height)]
    except (OSError, UnidentifiedImageError, ValueError):
        return None


@contextmanager
def _output(out: Path, relpath: str, outputs_at: str | None) -> Iterator[IO[bytes]]:
    """The output ``relpath`` open for reading: in ``out`` (never through a link), or at its URL under
    ``outputs_at`` (ranged reads). ``OSError`` when it cannot be read (missing, a store that cannot be used)."""
    if outputs_at is None:
        with open(out / relpath, "rb", opener=no_follow) as f:
            yield f
        return
    from ..storage import open_input
    from ..storage.location import join_inside
    raw = cast(io.RawIOBase, open_input(join_inside(outputs_at, relpath)))
    with io.BufferedReader(raw) as remote:  # whole reads (a raw one may stop short at its read-ahead's end)
        yield remote


def _inside(relpath: str) -> bool:
    """Whether an output path names something inside OUT (relative, no way up)."""
    return bool(relpath) and not relpath.startswith("/") and ".." not in relpath.split("/")


def _url(relpath: str) -> str:
    return quote(relpath, safe="/")


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _size(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return str(n)
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _summary(data: Mapping[str, Any], cards: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    doc = data["doc"]
    counts = {k: sum(1 for c in cards if c["status"] == k) for k in ("ok", "failed", "done", "cached")}
    neck = doc.get("bottleneck") or None
    return {"pipeline": doc.get("pipeline"), "executor": doc.get("executor"), "workers": doc.get("workers"),
            "wall_s": doc.get("wall_s"), "files": len(cards), **counts,
            "bottleneck": f"bottleneck: {neck['stage']} ({neck['reason']})" if isinstance(neck, dict) else None}


# Drawing ------------------------------------------------------------------------------------------------


def _stage_table(stages: Iterable[Mapping[str, Any]]) -> str:
    heads = ["stage", "where", "files", "items", "frames", "MB", "busy s", "starved s", "blocked s", "frames/s",
             "p95 ms", "failures"]
    rows = []
    for s in stages:
        cells = [s.get("name"), s.get("where"), s.get("files"), s.get("items_in"), s.get("frames"),
                 f"{(s.get('bytes') or 0) / 1e6:,.0f}", f"{s.get('busy_s') or 0:.2f}", f"{s.get('starved_s') or 0:.2f}",
                 f"{s.get('blocked_s') or 0:.2f}", f"{s.get('frames_per_s') or 0:,.1f}" if s.get("frames") else "-",
                 f"{(s.get('p95_s') or 0) * 1e3:.1f}" if s.get("p95_s") else "-", s.get("failures")]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    if not rows:
        return "<p>No stage statistics.</p>"
    head = "".join(f'<th scope="col">{h}</th>' for h in heads)
    return f'<table class="stages"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _charts(doc: Mapping[str, Any]) -> str:
    series = doc.get("timeline")
    if not isinstance(series, dict) or not series.get("throughput") and not series.get("utilization"):
        return "<p>No timeline was recorded for this run.</p>"
    from .chart import draw_timeline
    neck = doc.get("bottleneck")
    svg = draw_timeline(series, "svg", neck.get("stage") if isinstance(neck, dict) else None).decode()
    svg = svg[svg.index("<svg"):]  # the XML prolog and doctype have no place inside HTML
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, count=1, flags=re.S)  # matplotlib's RDF credits
    return ('<figure class="chart" role="img" aria-label="throughput of each stage and utilization of each worker '
            f'group over the run">{svg}<figcaption>Throughput per stage (frames/s) and busy share per worker group '
            'over the run.</figcaption></figure>')


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _template() -> str:
    return resources.files(__package__).joinpath("report_page.html").read_text(encoding="utf-8")
