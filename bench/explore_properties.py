"""Hunt with the property tests (run by hand, not in CI): `python bench/explore_properties.py [--seed N] [--only K]`.

CI draws the fixed examples of the hypothesis "ci" profile (tests/support/properties.py), so a fresh clone is
green or red for the code, never for the draw. This runs the same property tests under the "explore" profile:
new random examples (a seed drawn here and printed, or ``--seed``), 20 times as many, with no database. A failure
prints its falsifying example and the ``@reproduce_failure`` blob; replay it with the same ``--seed``. Then turn
the find into a fixed test (or, if the value is one kannon refuses by design, into a documented limit and the
"supported values" strategy). Prints one JSON line: seed, files, exit code, wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Every test file with @given properties; the hand-off properties are the ones that matter most.
FILES = [
    "tests/faults/test_handoff_properties.py",
    "tests/unit/test_k8s_naming.py",
    "tests/unit/test_planview.py",
    "tests/unit/test_report.py",
    "tests/e2e/k8s/test_emulator_units.py",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: drawn and printed)")
    ap.add_argument("--only", default=None, help="pytest -k expression, e.g. any_value")
    ap.add_argument("files", nargs="*", default=FILES, help="test files (default: every property test file)")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"explore: hypothesis seed {seed} (replay with --seed {seed})", file=sys.stderr, flush=True)
    # --timeout=0: 20x the examples outlast the suite's 300 s per-test limit (pyproject.toml) on a loaded machine
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--timeout=0", "--hypothesis-profile",
           "explore", f"--hypothesis-seed={seed}", *args.files]  # fmt: skip
    if args.only:
        cmd += ["-k", args.only]
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # CI=true allows only the "ci" profile
    started = time.monotonic()
    code = subprocess.call(cmd, cwd=REPO, env=env)
    print(json.dumps({"seed": seed, "files": args.files, "exit_code": code,
                      "seconds": round(time.monotonic() - started, 1)}))  # fmt: skip
    return code


if __name__ == "__main__":
    sys.exit(main())
