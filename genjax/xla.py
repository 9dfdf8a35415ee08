"""The XLA compiler options genjax's compiled programs get, and `jit`, which applies them.

On CPUs the pinned jaxlib (0.10.2) hands dots, reductions and convolutions to YNNPACK
library fusions by default. Its convolutions are the slow part for genjax's models:
XLA's own (Eigen) convolutions ran the DCGAN step 1.40x and the DDPM U-Net step 1.33x
faster on a 2-core Intel Xeon (AVX-512), and 1.6-1.7x / 1.5x on a 2-core AMD EPYC (AVX2,
where YNNPACK's convolutions ran on one thread), both with `genjax.nn.loop_conv`'s
swapped-role weight gradient. Switching YNNPACK off entirely is no better there and loses
precision: XLA's own reductions put the DCGAN's batch-norm gradients 2.4e-3 from a
float64 computation (YNNPACK's: 3e-7). So genjax keeps YNNPACK for what it does well and
takes convolutions away from it:

    CPU_DEFAULT = {"xla_cpu_experimental_ynn_fusion_type":
                   "LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_DOT"}

A program without convolutions compiles to the same code with or without it (tested).
The options go to each program (``jax.jit(..., compiler_options=...)``), never through
the process-wide ``XLA_FLAGS``, and only on CPUs: GPU and TPU programs get none.

Choosing (``--config.train.xla_options``, or the ``GENJAX_XLA_OPTIONS`` environment
variable for code outside an experiment, e.g. the benchmarks; the config wins):

* ``"auto"`` (default): `CPU_DEFAULT` on CPUs, nothing elsewhere;
* ``"none"``: XLA's defaults everywhere (the code before this choice);
* ``"NAME=VALUE;NAME=VALUE"``: exactly these options, on every backend, e.g.
  ``"xla_cpu_experimental_ynn_fusion_type="`` (empty: YNNPACK off).

    step = xla.jit(step_fn, donate_argnums=0)    # jax.jit plus the chosen options
"""

from __future__ import annotations

import os

import jax

YNN = "xla_cpu_experimental_ynn_fusion_type"
CPU_DEFAULT = {YNN: "LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_DOT"}
ENV = "GENJAX_XLA_OPTIONS"

_spec: str | None = None        # set by `configure`; None: the environment's or "auto"


def parse(spec: str) -> dict | None:
    """``"auto"`` -> None (decided per backend), ``"none"``/``""`` -> {}, and
    ``"NAME=VALUE;NAME=VALUE"`` -> {NAME: VALUE}. Raises ValueError naming the fix."""
    spec = spec.strip()
    if spec == "auto":
        return None
    if spec in ("none", ""):
        return {}
    out = {}
    for part in spec.split(";"):
        name, sep, value = part.strip().partition("=")
        if not sep or not name.strip().startswith("xla_") or " " in name.strip():
            raise ValueError(
                f"XLA options {spec!r}: {part.strip()!r} is not NAME=VALUE with an XLA "
                "option name (xla_...); use 'auto', 'none' or e.g. "
                f"'{YNN}=LIBRARY_FUSION_TYPE_REDUCE'")
        out[name.strip()] = value.strip()
    return out


def configure(spec: str | None) -> None:
    """Sets the options for the programs `jit` builds from now on in this process (None:
    back to ``$GENJAX_XLA_OPTIONS`` or "auto"). Raises ValueError for a bad ``spec``."""
    global _spec
    if spec is not None:
        parse(spec)
    _spec = spec


def current_spec() -> str:
    return _spec if _spec is not None else os.environ.get(ENV, "auto")


def compiler_options(backend: str | None = None, spec: str | None = None) -> dict:
    """The options for a program compiled for ``backend`` (default: jax's default
    backend) under ``spec`` (default: the current choice)."""
    from_env = spec is None and _spec is None and ENV in os.environ
    try:
        parsed = parse(current_spec() if spec is None else spec)
    except ValueError as e:
        raise ValueError(f"${ENV}: {e}" if from_env else str(e)) from None
    if parsed is not None:
        return dict(parsed)
    return dict(CPU_DEFAULT) if (backend or jax.default_backend()) == "cpu" else {}


def check(spec: str) -> None:
    """Raises ValueError if ``spec`` is malformed or XLA rejects the options it names on
    this backend (an unknown option or value: checked by compiling a one-op program with
    them). "auto" and "none" compile nothing here (`CPU_DEFAULT` is tested)."""
    options = parse(spec)
    if not options:
        return
    try:
        jax.jit(lambda x: x + 1, compiler_options=options).lower(1.0).compile()
    except Exception as e:       # XlaRuntimeError: INVALID_ARGUMENT: ...
        raise ValueError(f"XLA rejected the options {options}: "
                         f"{str(e).strip().splitlines()[0]}") from None


def jit(fn, **kwargs):
    """``jax.jit(fn, **kwargs)`` compiled with `compiler_options` as chosen now."""
    options = compiler_options()
    return jax.jit(fn, compiler_options=options or None, **kwargs)
