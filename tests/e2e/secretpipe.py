"""A pipeline for tests/e2e/test_secrets_core.py: a bullet with a PRIVATE and a HIDDEN parameter that uses an
inherited credential. It proves what reached it by writing digests (never the values) to its output, and copies
the spec files it can see, so the test can search them after kannon has deleted its own."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

import gokart
import luigi
from luigi.parameter import ParameterVisibility

import kannon


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Vault(kannon.TaskOnBullet[dict]):
    token = luigi.Parameter(visibility=ParameterVisibility.PRIVATE)
    hidden = luigi.Parameter(default="", visibility=ParameterVisibility.HIDDEN)
    shown = luigi.Parameter()
    evidence = luigi.Parameter(default="", significant=False)
    flags = luigi.Parameter(default="", significant=False)  # "print,wait,fail": the test's knobs, from the master

    def run(self) -> None:
        flags = self.flags.split(",")
        cred = os.environ.get("KANNON_TEST_CRED", "")
        if "print" in flags:
            print(f"connecting with {cred}", flush=True)  # a careless task: the master must mask it
            print(f"connecting with {cred}", file=sys.stderr, flush=True)
        if self.evidence:
            out = Path(self.evidence)
            out.mkdir(parents=True, exist_ok=True)
            runs = Path(self.workspace_directory, "kannon", "runs")
            for i, spec in enumerate(sorted(runs.glob("*/specs/*"))):
                shutil.copy(spec, out / f"spec-{i}")
            gate = out / "release"
            (out / "waiting").touch()
            while "wait" in flags and not gate.exists():
                time.sleep(0.05)
            if "fail" in flags:
                raise RuntimeError(f"failing on purpose (connected with {cred or 'nothing'})")
        self.dump({"cred": digest(cred), "token": digest(self.token), "hidden": digest(self.hidden)})


class Root(gokart.TaskOnKart[dict]):
    evidence = luigi.Parameter(default="", significant=False)

    def requires(self) -> Vault:
        return Vault(token="tok-Qy7-private-8812", hidden="hid-Lm3-hidden-5521", shown="visible-value",
                     evidence=self.evidence, flags=os.environ.get("KANNON_TEST_FLAGS", ""))

    def run(self) -> None:
        self.dump(self.load())


root = Root(evidence=os.environ.get("KANNON_TEST_EVIDENCE", ""))
