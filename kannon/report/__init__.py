"""The run report: one self-contained HTML file (DAG, timeline, failures, totals, resources) built from a run's
events.

``kannon build --report FILE.html`` and ``kannon report EVENTS.jsonl -o FILE.html`` both end here. The file
needs no network: the script and styles are inlined, the graph is drawn as SVG by the inlined script, and a
Content-Security-Policy allows nothing but those exact inlined blocks (by hash) — so even a task parameter that
slipped through escaping could neither run script nor fetch anything.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path

from kannon.events import Event, read_events
from kannon.planview import one_line
from kannon.report.data import report_data
from kannon.report.model import fold, last_run, select_run
from kannon.report.usageview import resources_view

__all__ = ["render_report", "write_report"]

_DATA_MARK = "{{KANNON_DATA}}"
_SCRIPT_MARK = "{{KANNON_SCRIPT}}"
_STYLE_MARK = "{{KANNON_STYLE}}"
_CSP_MARK = "{{KANNON_CSP}}"
_TITLE_MARK = "{{KANNON_TITLE}}"


def _asset(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def _script_json(data: object) -> str:
    """JSON that is inert inside <script type="application/json">: no "</script", "<!--", or line separators."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def render_report(events: Iterable[Event], run_id: str | None = None, run: str | None = None,
                  context: Mapping[str, str] | None = None) -> str:  # fmt: skip
    """The report of one run as a complete HTML document: ``run`` selects it as ``kannon report --run`` does (an
    index in the log or a run id prefix, see :func:`kannon.report.model.select_run`), ``run_id`` by exact run id;
    default: the last run in ``events``. An unknown selection raises ValueError listing the runs. ``context``:
    what the header shows about the run (target, command line, workspace, kannon version)."""
    selected = select_run(events, run) if run is not None else last_run(events, run_id)
    model = fold(selected)
    data = report_data(model)
    data["resources"] = resources_view(selected)
    data["context"] = dict(sorted((context or {}).items()))
    script = _asset("report.js")
    style = _asset("report.css")
    # The hashes cover exactly the text between the tags, so the blocks are inserted verbatim.
    csp = (
        f"default-src 'none'; script-src {_csp_hash(script)}; style-src {_csp_hash(style)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    title = one_line(f"kannon run {model.run_id or '?'} — {data['run']['outcome']}")
    page = _asset("report.html")
    # Substitute the untrusted parts last so marker-like text inside them is never expanded.
    page = page.replace(_CSP_MARK, html.escape(csp, quote=True))
    page = page.replace(_STYLE_MARK, style).replace(_SCRIPT_MARK, script)
    head, sep, tail = page.partition(_TITLE_MARK)
    page = head + html.escape(title) + tail if sep else page
    head, sep, tail = page.partition(_DATA_MARK)
    if not sep:
        raise RuntimeError("report template lost its data marker")
    return head + _script_json(data) + tail


def _logged_context(path: Path, run_id: str | None, started_at: float | None) -> dict[str, str]:
    """The ``context`` a ``kannon build --events`` wrote on the selected run's ``run_started`` line, if any."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if '"context"' not in line or '"run_started"' not in line:
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue
            if d.get("run_id") == run_id and d.get("time") == started_at and isinstance(d.get("context"), dict):
                return {str(k): str(v) for k, v in d["context"].items()}
    return {}


def write_report(
    events_path_or_events: str | os.PathLike[str] | Iterable[Event],
    out_path: str | os.PathLike[str],
    run_id: str | None = None,
    run: str | None = None,
    context: Mapping[str, str] | None = None,
) -> Path:
    """Write the report of an event log (path) or of events; returns the path written.

    Written to a temporary file and renamed, so a browser never sees half a report.
    """
    if isinstance(events_path_or_events, (str, os.PathLike)):
        events: Iterable[Event] = list(read_events(Path(events_path_or_events)))
        if context is None:
            model = fold(select_run(events, run) if run is not None else last_run(events, run_id))
            context = _logged_context(Path(events_path_or_events), model.run_id, model.started_at)
    else:
        events = events_path_or_events
    text = render_report(events, run_id=run_id, run=run, context=context)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # open() rather than mkstemp: the report gets the usual umask permissions, not 0600
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
