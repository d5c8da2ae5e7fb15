"""Family sections of the report: what each family's own analysis shows for its runs.

A family contributes in one of two ways:

- a ``report`` hook, ``"module:function"`` on its :class:`assay.Family` (proposed field), with
  ``function(records) -> list[ReportSection]``: interactive Plotly figures, tables and text;
- its ``analyze`` hook (what ``assay analyze`` already calls), run into a temporary folder: the
  text it prints, the PNG/SVG figures and the CSV tables it writes are embedded as they are.

A hook that raises does not stop the report: its section shows the error, and the problem is
listed for the command to print.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import dataclasses
import io
import tempfile
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core._run import RunRecord

IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}
MAX_IMAGE_BYTES = 8_000_000  # per family: keeps a report with many plots openable
MAX_TABLE_ROWS = 30  # rows shown per CSV a hook wrote (the file itself has all)
MAX_TABLES = 12
MAX_TEXT_CHARS = 20_000


@dataclasses.dataclass(frozen=True)
class ReportSection:
    """One section a family's ``report`` hook returns.

    Attributes:
        title: the section heading.
        text: plain text shown above the figures (preformatted).
        figures: Plotly figures (``plotly.graph_objects.Figure`` or its ``to_plotly_json()``
            dict), drawn interactively.
        tables: ``(caption, rows)`` with rows a list of dicts sharing their keys.
        images: PNG, SVG or JPEG files to embed.
    """

    title: str
    text: str = ""
    figures: Sequence[Any] = ()
    tables: Sequence[tuple[str, Sequence[Mapping[str, Any]]]] = ()
    images: Sequence[Path] = ()


def family_sections(
    records: Sequence[RunRecord], problems: list[str], memo: dict[Any, Any] | None = None
) -> list[dict[str, Any]]:
    """The sections of every installed family that has finished runs among ``records``.

    Args:
        memo: results by (family, finished runs); ``assay serve`` keeps it between refreshes so
            a hook runs again only when its runs changed.
    """
    from ..core._registry import families

    out = []
    for fam in families().values():
        mine = [r for r in records if r.stage.split(".", 1)[0] == fam.name]
        report_spec = fam.report
        if not mine or not (report_spec or fam.analyze):
            continue
        key = (fam.name, tuple((r.id, r.ended) for r in records))
        if memo is not None and key in memo:
            sections, problem = memo[key]
        else:
            sections, problem = _run_hook(fam, records, use_report=bool(report_spec))
            if memo is not None:
                memo[key] = (sections, problem)
        if problem:
            problems.append(problem)
        out.extend(sections)
    return out


def _run_hook(fam: Any, records: Sequence[RunRecord], *, use_report: bool):
    source = "report" if use_report else "analyze"
    try:
        if use_report:
            hook = fam.resolve("report")
            return [_section(fam.name, s, source) for s in hook(list(records))], None
        return [_from_analyze(fam, records)], None
    except Exception as exc:  # a family's bug must not cost the researcher the whole report
        error = f"{type(exc).__name__}: {exc}"
        tail = "".join(traceback.format_exc().splitlines(keepends=True)[-12:])
        section = {
            "family": fam.name,
            "title": f"{fam.name}: its {source} hook failed",
            "source": source,
            "text": tail,
            "images": [],
            "tables": [],
            "figures": [],
            "error": error,
            "notes": [],
        }
        return (
            [section],
            f"family {fam.name}: the {source} hook failed ({error}); its section "
            "shows the traceback",
        )


def _from_analyze(fam: Any, records: Sequence[RunRecord]) -> dict[str, Any]:
    hook = fam.resolve("analyze")
    printed = io.StringIO()
    with tempfile.TemporaryDirectory(prefix=f"assay-report-{fam.name}-") as tmp:
        out_dir = Path(tmp) / fam.name
        with contextlib.redirect_stdout(printed):
            hook(list(records), out_dir)
        files = sorted(p for p in out_dir.rglob("*") if p.is_file()) if out_dir.exists() else []
        images, notes = _images([p for p in files if p.suffix.lower() in IMAGE_TYPES], out_dir)
        csvs = [p for p in files if p.suffix.lower() == ".csv"]
        tables = [_csv_table(p, out_dir) for p in csvs[:MAX_TABLES]]
        if len(csvs) > MAX_TABLES:
            notes.append(
                f"{len(csvs) - MAX_TABLES} more CSV file(s) not shown; run "
                f"`assay analyze ... --out DIR` for every file"
            )
        others = [
            str(p.relative_to(out_dir))
            for p in files
            if p.suffix.lower() not in IMAGE_TYPES and p.suffix.lower() != ".csv"
        ]
    text = printed.getvalue()
    if len(text) > MAX_TEXT_CHARS:
        notes.append(f"printed output cut to its first {MAX_TEXT_CHARS:,} characters")
        text = text[:MAX_TEXT_CHARS]
    if others:
        notes.append("other files written by the hook: " + ", ".join(others[:20]))
    return {
        "family": fam.name,
        "title": f"{fam.name}: {fam.description}",
        "source": "analyze",
        "text": text.strip("\n"),
        "images": images,
        "tables": tables,
        "figures": [],
        "error": None,
        "notes": notes,
    }


def _images(paths: Sequence[Path], base: Path) -> tuple[list[dict[str, str]], list[str]]:
    out, used, notes = [], 0, []
    for p in paths:
        name = str(p.relative_to(base)) if p.is_relative_to(base) else p.name
        data = p.read_bytes()
        if used + len(data) > MAX_IMAGE_BYTES:
            notes.append(
                f"{name} left out: the family's figures exceed {MAX_IMAGE_BYTES / 1e6:.0f} MB"
            )
            continue
        used += len(data)
        out.append(
            {
                "name": name,
                "mime": IMAGE_TYPES[p.suffix.lower()],
                "b64": base64.b64encode(data).decode("ascii"),
            }
        )
    return out, notes


def _csv_table(path: Path, base: Path) -> dict[str, Any]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        rows: list[list[str]] = []
        n = 0
        for row in reader:
            n += 1
            if len(rows) < MAX_TABLE_ROWS:
                rows.append(row)
    caption = str(path.relative_to(base))
    if n > MAX_TABLE_ROWS:
        caption += f" (first {MAX_TABLE_ROWS} of {n} rows)"
    return {"caption": caption, "columns": header, "rows": rows}


def _section(family: str, s: ReportSection, source: str) -> dict[str, Any]:
    if not isinstance(s, ReportSection):
        raise TypeError(f"a report hook returns ReportSection objects, got {type(s).__name__}")
    images, notes = _images([Path(p) for p in s.images], Path.cwd())
    tables = []
    for caption, rows in s.tables:
        rows = list(rows)
        columns = list(dict.fromkeys(k for r in rows for k in r))
        shown = [[r.get(c) for c in columns] for r in rows[:MAX_TABLE_ROWS]]
        more = (
            f" (first {MAX_TABLE_ROWS} of {len(rows)} rows)" if len(rows) > MAX_TABLE_ROWS else ""
        )
        tables.append({"caption": caption + more, "columns": columns, "rows": shown})
    figures = [f.to_plotly_json() if hasattr(f, "to_plotly_json") else f for f in s.figures]
    return {
        "family": family,
        "title": s.title,
        "source": source,
        "text": s.text,
        "images": images,
        "tables": tables,
        "figures": figures,
        "error": None,
        "notes": notes,
    }
