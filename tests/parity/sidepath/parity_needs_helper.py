"""Importable only with a second directory on sys.path, which nothing tells a child about."""

from __future__ import annotations

import parity_helper  # from tests/parity/helperpath, added to the master's sys.path only

from tests.parity.pipelines import Base


class NeedsHelper(Base):
    def run(self) -> None:
        self.dump(parity_helper.VALUE)
