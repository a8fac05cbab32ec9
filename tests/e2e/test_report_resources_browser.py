"""The report's resources view in real headless Chromium (issue 17): per task class the spread of peak memory and
cpu against the request, over-provisioned and at-risk classes marked; drawn without a console message. Its
screenshot is the one in docs/observability.md (docs/img/report-resources.png)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kannon.report import write_report
from kannon.report.sample import resources_events, sample_events
from tests.e2e.test_report_browser import ARTIFACTS, CHROMIUM_FLAGS, _DomParser, assert_png, chromium, load

pytestmark = pytest.mark.browser
__all__ = ["chromium"]  # the fixture, used by name


class _Rows(_DomParser):
    """The resources table's rows (data-family, -over, -risk) and the text of each cell."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str | None]] = {}
        self.cells: dict[str, list[str]] = {}
        self._row: str | None = None
        self._in_td = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        super().handle_starttag(tag, attrs)
        a = dict(attrs)
        if tag == "tr" and a.get("data-family"):
            self._row = str(a["data-family"])
            self.rows[self._row] = a
            self.cells[self._row] = []
        elif tag == "td" and self._row is not None:
            self.cells[self._row].append("")
            self._in_td = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None
        if tag == "td":
            self._in_td = False

    def handle_data(self, data: str) -> None:
        super().handle_data(data)
        if self._row is not None and self._in_td:
            self.cells[self._row][-1] += data


def test_resources_view_marks_over_provisioned_and_at_risk_classes(chromium: str, tmp_path: Path) -> None:
    html_file = write_report(resources_events(), tmp_path / "resources.html")
    shot = ARTIFACTS / "report-resources.png"
    page = load(chromium, html_file, tmp_path)
    assert page.console == [], page.console
    assert page.body.get("data-rendered") == "ok", page.body
    rows = _Rows()
    rows.feed(page.dom)
    assert list(rows.rows) == ["Featurize", "Load", "Train"]
    flags = {f: (r.get("data-over"), r.get("data-risk"), r.get("class")) for f, r in rows.rows.items()}
    assert flags == {"Featurize": ("1", "1", "at-risk"), "Load": ("3", "0", "over"), "Train": ("0", "1", "at-risk")}
    load_cells = rows.cells["Load"]
    assert "280 MiB / 300 MiB / 310 MiB" in load_cells and "4 GiB" in load_cells, load_cells
    assert "0.85 / 0.90 / 0.95" in load_cells and "3 over-provisioned" in load_cells, load_cells
    train_cells = rows.cells["Train"]
    assert "610 MiB / 675 MiB / 960 MiB" in train_cells and "1 at risk" in train_cells, train_cells
    # each class lists its attempts; the at-risk one says so
    assert any("fold=3" in c and "AT RISK" in c for c in train_cells), train_cells
    assert any("day=1" in c and "OOM-killed" in c for c in rows.cells["Featurize"])
    # a window tall enough for the whole report down to the resources view (headless Chromium draws a blank page
    # when asked to scroll to it first)
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.unlink(missing_ok=True)
    proc = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile-shot'}",
                           f"--screenshot={shot}", "--window-size=1400,1900", html_file.resolve().as_uri()],
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_png(shot, 1400, 1900)


def test_a_run_without_usage_has_no_resources_view(chromium: str, tmp_path: Path) -> None:
    page = load(chromium, write_report(sample_events(), tmp_path / "plain.html"), tmp_path)
    assert page.body.get("data-rendered") == "ok"
    assert 'id="resources-section" hidden' in page.dom.replace('hidden=""', "hidden")
