"""One of two modules defining a task class of the same name (issue 18 point 3)."""

from __future__ import annotations

import luigi

from tests.parity.pipelines import Base


class Twin(Base):
    side = luigi.Parameter(default="a")

    def run(self) -> None:
        self.dump(f"twin {self.side}")
