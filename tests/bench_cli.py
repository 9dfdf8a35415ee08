"""Helpers for the benchmark smoke tests: run a benchmark's CLI in a subprocess from the
repository root and read its JSON record."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def positive_finite(v) -> bool:
    """A real, finite, positive number (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
        and v > 0


def run(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m module *args`` in the repository root; stdout and stderr captured."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def run_quick(module: str, out, *args: str, timeout: int = 300):
    """Runs ``module --quick --out=out *args``, asserts it succeeded, and returns
    (stdout, the JSON record it wrote)."""
    proc = run(module, "--quick", f"--out={out}", *args, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out) as f:
        return proc.stdout, json.load(f)
