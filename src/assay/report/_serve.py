"""``assay serve``: the report of a store over HTTP on this machine, refreshed while runs go on.

    assay serve suites/example/polyfit.yaml --root runs      # that suite's report
    assay serve --root runs                                  # an index of the stages recorded

The page is the same self-contained report ``assay report`` writes; it asks ``data.json`` for
new data every ``--refresh-s`` seconds and redraws without losing its sort, filter, page or
curve zoom. The page says which build it holds; the answer is "unchanged", or only the runs and
blocks that changed since that build (:mod:`._delta`), or, for a page the server does not know,
the whole record.
A refresh first compares a cheap fingerprint of the store rows and of the files of the runs in
flight, and rebuilds the data only when it changed; parsed run files are cached between
refreshes (:class:`~._runfiles.RunFiles`), so a 1,000-run suite refreshes in well under a second.

The server binds to 127.0.0.1 by default and answers only requests addressed to that host
(refusing other Host headers, the DNS-rebinding way in), since a report shows every config.
"""

from __future__ import annotations

import hashlib
import html
import http.server
import json
import math
import os
import sys
import threading
import traceback
import urllib.parse
from pathlib import Path
from typing import Any

from ..core._errors import AssayError
from ..core._run import RunStatus
from ..store import Store, resolve_store
from ._delta import Builds, Snapshot, delta, snapshot, split
from ._runfiles import RunFiles


class ReportServer:
    """Builds reports for HTTP requests: one at a time, with caches kept between them."""

    def __init__(self, source: dict[str, Any], *, refresh_ms: int) -> None:
        self.source = source
        self.refresh_ms = refresh_ms
        self.files = RunFiles()
        self.memo: dict[Any, Any] = {}  # family sections by (family, finished runs)
        self.lock = threading.Lock()
        self._plan: tuple[Any, list[Any]] | None = None  # (suite file stamp, planned runs)
        self._built: dict[str | None, tuple[str, dict[str, Any], str]] = {}
        self._parts: dict[str | None, tuple[dict[str, Any], dict[str, Any], Snapshot]] = {}
        self._builds: dict[str | None, Builds] = {}

    # -- what a request names ------------------------------------------------------------------
    def _planned(self) -> list[Any]:
        """The suite's planned runs, planned again only when the suite file changed."""
        from ..engine._api import plan_suite
        from ..engine._suite import load_suite

        suite = self.source["suite"]
        stamp = os.stat(suite.path).st_mtime_ns if suite.path else None
        if self._plan is None or self._plan[0] != stamp:
            if self._plan is not None and suite.path:
                suite = self.source["suite"] = load_suite(suite.path)
            planned = plan_suite(
                suite,
                self.source["overrides"],
                imports=self.source["imports"],
                trust_imports=self.source["trust_imports"],
                seeds=self.source["seeds"],
            )
            self._plan = (stamp, planned)
        return self._plan[1]

    def open_store(self) -> Store:
        """The store, read-only. A suite served before `assay run` first wrote to its root
        reads as an empty store held in memory: nothing is created where --root points."""
        url, root = self.source["store"], self.source["root"]
        if url is None and not (Path(root) / "assay.db").exists():
            return resolve_store("sqlite:///:memory:", root)
        return resolve_store(url, root, read_only=True)

    def fingerprint(self, stage: str | None) -> str:
        """Changes whenever a run (or an upstream run of the suite's) changes state, finishes,
        beats or logs: upstream stages' curves refresh while they train. Read without configs
        and results (``light``): what an unchanged poll costs (0.5 s at 10,000 runs)."""
        with self.open_store() as store:
            if stage is None:
                ids = {r.id: None for top in self._planned() for r in top.closure()}
                records = store.query(ids=list(ids), light=True)  # upstream runs too
            else:
                records = store.query(stage=stage, light=True)
        h = hashlib.sha256()
        for r in sorted(records, key=lambda r: r.id):
            h.update(f"{r.id}|{r.status.value}|{r.attempts}|{r.ended}|{r.heartbeat}\n".encode())
            if r.status is RunStatus.RUNNING and r.dir is not None:
                for name in ("metrics.jsonl", "progress.json"):
                    try:
                        st = os.stat(r.dir / name)
                    except OSError:
                        continue
                    h.update(f"{name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]

    def build(self, stage: str | None) -> tuple[str, dict[str, Any], str]:
        """``(fingerprint, data, sections_html)`` for the suite (``stage`` None) or a stage."""
        from ._data import collect
        from ._html import render_sections

        with self.lock:
            fp = self.fingerprint(stage)
            cached = self._built.get(stage)
            if cached is not None and cached[0] == fp:
                return cached
            source = dict(self.source)
            if stage is None:
                source["planned"] = self._planned()
            else:
                source.update(suite=None, overrides=[], stage=stage)
            with self.open_store() as store:
                source["store"] = store
                data = collect(**source, files=self.files, memo=self.memo)
            data["fingerprint"] = fp
            built = (fp, data, render_sections(data))
            self._built[stage] = built
            runs, blocks = split(data, built[2])
            snap = snapshot(runs, blocks)
            self._parts[stage] = (runs, blocks, snap)
            self._builds.setdefault(stage, Builds()).add(fp, snap)
            return built

    def payload(self, stage: str | None, since: str | None) -> str:
        """The ``data.json`` answer to a page holding the build ``since``: unchanged, the
        changes since that build (:mod:`._delta`), or the whole record."""
        from ._html import data_json

        self.build(stage)
        with self.lock:  # the build and its parts together, whatever another request did
            fp, data, sections = self._built[stage]
            runs, blocks, snap = self._parts[stage]
            old = self._builds[stage].get(since)
        if since == fp:
            return '{"unchanged":true}'
        if old is not None:
            change = delta(old, snap, runs, blocks)
            return f'{{"fingerprint":{json.dumps(fp)},"delta":{data_json(change)}}}'
        return f'{{"data":{data_json(data)},"sections_html":{json.dumps(sections)}}}'

    def index(self) -> str:
        """The stages recorded in the store, with their counts and links to their reports."""
        with self.open_store() as store:
            records = store.query()
        stages: dict[str, dict[str, int]] = {}
        for r in records:
            counts = stages.setdefault(r.stage, {})
            counts[r.status.value] = counts.get(r.status.value, 0) + 1
        rows = "".join(
            f'<tr><td><a href="?stage={urllib.parse.quote(s)}">{html.escape(s)}</a></td>'
            f"<td>{html.escape(', '.join(f'{v} {k}' for k, v in sorted(c.items())))}</td></tr>"
            for s, c in sorted(stages.items())
        )
        root = html.escape(str(self.source["root"]))
        body = (
            f"<table><tr><th>stage</th><th>runs</th></tr>{rows}</table>"
            if rows
            else "<p>no runs recorded yet.</p>"
        )
        return _page(
            "assay serve",
            f"<h1>Runs under {root}</h1>{body}<p>A suite's report: "
            "<code>assay serve SUITE --root ROOT</code>.</p>",
        )


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" '
        f'href="data:,"><title>{html.escape(title)}</title></head><body>{body}</body>'
        "</html>"
    )


def _handler(server: ReportServer, allowed_hosts: set[str]) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
            pass  # one line per poll would drown the terminal

        def _send(self, code: int, body: str, ctype: str) -> None:
            data = body.encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (stdlib name)
            if self.headers.get("Host", "") not in allowed_hosts:
                self._send(
                    403,
                    "refused: this server answers only requests addressed to "
                    f"{sorted(allowed_hosts)[0]}",
                    "text/plain",
                )
                return
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            stage = query.get("stage") or server.source["stage"]  # None: the suite's report
            if stage is None and server.source["suite"] is None:
                if url.path == "/":
                    self._send(200, server.index(), "text/html; charset=utf-8")
                else:
                    self._send(404, "no report here: pick a stage at /", "text/plain")
                return
            try:
                if url.path == "/":
                    from ._html import render_html

                    _, data, _ = server.build(stage)
                    page = render_html(data, live=True, refresh_ms=server.refresh_ms)
                    self._send(200, page, "text/html; charset=utf-8")
                elif url.path == "/data.json":
                    body = server.payload(stage, query.get("since"))
                    self._send(200, body, "application/json")
                else:
                    self._send(404, f"no page {url.path}; the report is at /", "text/plain")
            except AssayError as exc:
                if url.path == "/data.json":
                    self._send(200, json.dumps({"error": str(exc)}), "application/json")
                else:
                    self._send(
                        200,
                        _page("assay serve", f"<p>{html.escape(str(exc))}</p>"),
                        "text/html; charset=utf-8",
                    )
            except Exception:  # keep serving; say what broke
                traceback.print_exc(file=sys.stderr)
                self._send(
                    500, "internal error; see the terminal running assay serve", "text/plain"
                )

    return Handler


def serve(
    source: dict[str, Any],
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    refresh_s: float = 2.0,
    ready: Any = None,
) -> None:
    """Serve until interrupted. ``source``: the keyword arguments of :func:`collect`.

    Args:
        ready: called with the bound ``(host, port)`` once the server listens (tests).
    """
    if not math.isfinite(refresh_s) or refresh_s <= 0:
        raise AssayError(f"--refresh-s must be > 0, got {refresh_s}; give seconds, e.g. 2")
    if not 0 <= port <= 65535:
        raise AssayError(f"--port must be in 0..65535 (0 picks a free one), got {port}")
    server = ReportServer(source, refresh_ms=int(refresh_s * 1000))
    if source["suite"] is not None:
        server.build(None)  # a bad suite or store fails here, before anything listens
    try:
        httpd = http.server.ThreadingHTTPServer((host, port), _handler(server, set()))
    except OSError as exc:
        raise AssayError(
            f"cannot listen on {host}:{port} ({exc.strerror}); pick another "
            "--port, or --port 0 for a free one"
        ) from None
    bound = httpd.server_address[1]
    names = {host, "localhost"} if host in ("127.0.0.1", "::1") else {host}
    allowed = {f"{n}:{bound}" for n in names}
    if host in ("0.0.0.0", "::"):
        allowed = _AnyHost()  # bound to every address on purpose: any Host header
    httpd.RequestHandlerClass = _handler(server, allowed)
    what = source["suite"].name if source["suite"] else (source["stage"] or "the store's stages")
    print(
        f"serving {what} at http://{host}:{bound}/ (runs under {source['root']}; Ctrl-C stops)",
        flush=True,
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: bound to {host}: anyone who can reach this machine can read every "
            "run's config and results",
            file=sys.stderr,
            flush=True,
        )
    if ready is not None:
        ready(host, bound)
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        httpd.server_close()


class _AnyHost(set):
    def __contains__(self, item: object) -> bool:
        return True
