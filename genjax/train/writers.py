"""Where metrics go: the console (progress, rate, ETA), TensorBoard event files (through
tensorboardX, no TensorFlow needed) and ``metrics.jsonl`` in the workdir."""

from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np


def log(msg: str) -> None:
    print(msg, file=sys.stdout, flush=True)


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.4e}"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class MetricWriter:
    """write(step, metrics) appends to metrics.jsonl and TensorBoard; progress(step, ...)
    prints a console line with steps/s and ETA. Opened in append mode, so a resumed run
    continues the same files.

    With several processes only process 0 writes (files and console); the others' writer
    does nothing, since every process holds the same replicated metrics."""

    def __init__(self, workdir: str, *, total_steps: int, tensorboard: bool = True,
                 console: bool = True):
        from genjax.train.distributed import is_main_process

        self.total_steps = total_steps
        self.main = is_main_process()
        self.console = console and self.main
        self._jsonl = self._tb = None
        self._t0, self._s0 = None, None
        if not self.main:
            return
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
        if tensorboard:
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(logdir=os.path.join(workdir, "tensorboard"))
        self._t0, self._s0 = None, None

    def start(self, step: int) -> None:
        self._t0, self._s0 = time.perf_counter(), step

    def write(self, step: int, metrics: dict, prefix: str = "train") -> None:
        if self._jsonl is None:
            return
        scalars = {f"{prefix}/{k}": float(v) for k, v in metrics.items()}
        self._jsonl.write(json.dumps({"step": int(step), **scalars}) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, int(step))

    def progress(self, step: int, metrics: dict, *, prefix: str = "train") -> float:
        """Prints 'step s/T | r steps/s | ETA | metrics'; returns steps/s since start."""
        elapsed = time.perf_counter() - self._t0 if self._t0 else float("nan")
        rate = (step - self._s0) / elapsed if elapsed and elapsed > 0 else float("nan")
        eta = (self.total_steps - step) / rate if rate and rate > 0 else float("nan")
        if self.console:
            shown = " ".join(f"{k} {_fmt(float(v))}" for k, v in metrics.items())
            log(f"[{prefix}] step {step}/{self.total_steps} | {rate:.1f} steps/s | "
                f"ETA {_duration(eta)} | {shown}")
        return rate

    def image(self, step: int, name: str, image: np.ndarray) -> None:
        """image: [H, W, C] uint8."""
        if self._tb is not None:
            self._tb.add_image(name, image, int(step), dataformats="HWC")

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
