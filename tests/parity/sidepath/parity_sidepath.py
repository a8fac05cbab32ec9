"""Importable only through a sys.path edit the master makes (issue 18 point 6)."""

from __future__ import annotations

from tests.parity.pipelines import Base


class OnSidePath(Base):
    def run(self) -> None:
        self.dump("found through sys.path")
