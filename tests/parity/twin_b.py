"""The other module defining ``Twin``; its root needs twin_a's ``Twin`` too."""

from __future__ import annotations

from typing import Any

from tests.parity import twin_a
from tests.parity.pipelines import Base


class Twin(Base):
    def requires(self) -> Any:
        return twin_a.Twin()

    def run(self) -> None:
        self.dump(self.load() + " + twin b")
