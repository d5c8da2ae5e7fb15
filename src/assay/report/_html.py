"""Rendering the report's data record into one self-contained HTML file.

Jinja2 renders the page (templates/); the run data and the Plotly bundle are embedded gzip'd
and base64-encoded, so a 1,000-run report with interactive figures stays around 2 MB and
opens with no network (the page decodes them with the browser's DecompressionStream). A
Content-Security-Policy in the page forbids any request to another host.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
import math
import re
from pathlib import Path
from typing import Any

from ..core._errors import AssayError

TEMPLATES = Path(__file__).parent / "templates"
REFRESH_MS = 2000  # how often a served report asks for new data


@functools.lru_cache(maxsize=1)
def _env() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt field is an error, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["pval"] = _pval
    return env


def _num(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def _pval(value: Any, n_pairs: int | None = None) -> str:
    if isinstance(value, str) and value not in ("nan", "inf", "-inf"):
        return value  # why there is no test ("no variation"), set by the report's data
    if n_pairs is not None and n_pairs < 2:
        return "no shared seeds" if n_pairs == 0 else "one shared seed"
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "n/a (needs 2 runs per group)"
    return f"{value:.3g}"


@functools.lru_cache(maxsize=1)
def plotly_b64() -> str:
    """The plotly.js bundle shipped in the plotly package, gzip'd and base64-encoded (cached:
    compressing 4.8 MB costs about half a second)."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise AssayError(
            "the HTML report needs plotly and jinja2: pip install 'assay[report]'"
        ) from None
    return _pack(get_plotlyjs())


def _pack(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode("utf-8"), 6, mtime=0)).decode("ascii")


def _asset(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def data_json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


def render_sections(data: dict[str, Any]) -> str:
    """The server-rendered sections alone (statistics, provenance, failures, families)."""
    return _env().get_template("sections.html.j2").render(data=data)


def render_html(data: dict[str, Any], *, live: bool = False, refresh_ms: int = REFRESH_MS) -> str:
    """The whole page for ``data`` (from :func:`~._data.collect`)."""
    try:
        import jinja2  # noqa: F401
    except ImportError:
        raise AssayError(
            "the HTML report needs plotly and jinja2: pip install 'assay[report]'"
        ) from None
    js = _asset("report.js")
    if "</script" in js.lower():
        raise AssertionError("report.js must not contain a closing script tag")
    return (
        _env()
        .get_template("report.html.j2")
        .render(
            data=data,
            live=live,
            refresh_ms=refresh_ms,
            css=_asset("report.css"),
            js=js,
            data_b64=_pack(data_json(data)),
            plotly_b64=plotly_b64(),
        )
    )


def write_html(path: str | Path, data: dict[str, Any]) -> Path:
    """Write the report atomically; returns the path."""
    from ..core._io import atomic_write_text

    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise AssayError(f"report file {str(path)!r} must end in .html; e.g. --out report.html")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, render_html(data))
    return path


_DATA_RE = re.compile(r'<script id="assay-data" type="application/gzip-base64">([^<]*)</script>')


def read_report_data(path: str | Path) -> dict[str, Any]:
    """The data record embedded in a report file (what its tables and figures show)."""
    text = Path(path).read_text(encoding="utf-8")
    found = _DATA_RE.search(text)
    if found is None:
        raise AssayError(f"{path} is not an assay report (no embedded data block)")
    return json.loads(gzip.decompress(base64.b64decode(found.group(1))))
