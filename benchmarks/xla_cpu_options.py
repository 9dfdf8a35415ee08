"""How genjax should compile on CPUs: XLA option sets x `loop_conv` weight-gradient paths,
timed on the DCGAN and DDPM U-Net training steps, with each set's gradients against a
float64 computation. The measurement behind `genjax.xla.CPU_DEFAULT` and
`genjax.nn.loop_conv.weight_grad_path`.

    python -m benchmarks.xla_cpu_options [--out=benchmarks/results/xla_cpu_options.json]
        [--models=gan,ddpm] [--repeats=5] [--quick]

Candidates (``xla_cpu_experimental_ynn_fusion_type``, which library fusions XLA:CPU hands
to YNNPACK; the pinned jaxlib's default sends it dots, reductions and convolutions):

* ``none``: XLA's defaults (the code before `genjax.xla`);
* ``off``: the empty list, Eigen for everything;
* ``reduce``: YNNPACK for reductions only;
* ``reduce,dot`` (genjax's ``auto``): YNNPACK for reductions and dots, convolutions to
  Eigen;

each with `loop_conv`'s two weight-gradient paths: "products" (im2col products, per
kernel row for stride-1 layers; its choice under YNNPACK convolutions) and "swapped" (one
swapped-role convolution; its choice under Eigen's). Each combination trains the
experiment's own step (``experiments.gan.build`` / ``experiments.ddpm.build``, default
presets) in a compiled chunk, as the loop does;
the chunks take turns (``--repeats`` rounds) and every time is a median, with speedups
against ``none`` + "products", the code before.

Precision: for each option set (with `weight_grad_path`'s choice under it), the gradient of a
fixed loss on one batch (DCGAN: the non-saturating G loss plus D's loss on real digits,
through both networks and the generator's batch norm; U-Net: the noise-prediction loss at
fixed t and noise) in float32, against the same gradient in float64 (XLA's defaults):
max over parameter tensors of max |g32 - g64| / max |g64| (with a floor of 1e-3 of the
largest float64 gradient anywhere, for tensors whose gradient vanishes at initialisation).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import common
from genjax import data as gdata
from genjax import xla
from genjax.nn import loop_conv

DEFAULT_OUT = os.path.join("benchmarks", "results", "xla_cpu_options.json")
_R, _D = "LIBRARY_FUSION_TYPE_REDUCE", "LIBRARY_FUSION_TYPE_DOT"
CANDIDATES = {"none": "none", "off": f"{xla.YNN}=", "reduce": f"{xla.YNN}={_R}",
              "reduce,dot": f"{xla.YNN}={_R},{_D}"}
PATHS = ("products", "swapped")
BEFORE = ("none", "products")


def _build(model: str, shape, quick: bool):
    """(config, state, step, finite, loss_and_params) for the default preset."""
    if model == "gan":
        from configs import gan as cfg
        from experiments import gan as exp
        config = cfg.get_config()
        if quick:
            config.model.g_channels = config.model.d_channels = 8
        generate, discriminate, state, step = exp.build(config, shape)
        return config, state, step, ("d_loss", "g_loss"), _gan_loss(config, generate,
                                                                     discriminate, state)
    from configs import ddpm as cfg
    from experiments import ddpm as exp
    config = cfg.get_config()
    if quick:
        config.model.channels, config.model.channel_mults = 8, (1, 2)
        config.model.attention_resolutions = ()
    graphdef, state, step, schedule = exp.build(config, shape)
    return config, state, step, ("loss",), _ddpm_loss(config, graphdef, schedule, state)


def _gan_loss(config, generate, discriminate, state):
    params = {"g": state.params["g"], "d": state.params["d"]}
    z_dim = config.model.latent_dim

    def loss(p, real):
        # drawn in float32 whatever the precision, so that both see the same numbers
        z = jax.random.normal(jax.random.key(1), (real.shape[0], z_dim), jnp.float32)
        fake = generate(p["g"], z.astype(real.dtype))
        return (jnp.mean(jax.nn.softplus(-discriminate(p["d"], fake)))
                + jnp.mean(jax.nn.softplus(-discriminate(p["d"], real))))
    return loss, params


def _ddpm_loss(config, graphdef, schedule, state):
    def loss(p, x0):
        unet = nnx.merge(graphdef, p)
        b = x0.shape[0]
        t = jax.random.randint(jax.random.key(1), (b,), 0, len(schedule.betas), jnp.int32)
        noise = jax.random.normal(jax.random.key(2), x0.shape, jnp.float32)
        noise = noise.astype(x0.dtype)
        ab = jnp.asarray(schedule.alpha_bars, x0.dtype)[t][:, None, None, None]
        xt = jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * noise
        return jnp.mean((unet(xt, t) - noise) ** 2)
    return loss, state.params


def gradient_errors(loss, params, batch, specs: dict) -> dict:
    """{name: max over tensors of max|g32 - g64| / max|g64|} for each option set (a
    tensor whose float64 gradient is below 1e-3 of the largest anywhere, such as the
    layers behind a zero-initialised output, is measured against that 1e-3 instead)."""
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        with loop_conv.forced_weight_grad(None):
            xla.configure("none")
            g64 = jax.device_get(xla.jit(jax.grad(loss))(p64, jnp.asarray(batch, jnp.float64)))
    out = {}
    for name, spec in specs.items():
        xla.configure(spec)
        g32 = jax.device_get(xla.jit(jax.grad(loss))(params, jnp.asarray(batch, jnp.float32)))
        top = max(float(np.max(np.abs(b))) for b in jax.tree_util.tree_leaves(g64))
        errs = jax.tree_util.tree_map(
            lambda a, b: float(np.max(np.abs(np.asarray(a, np.float64) - b))
                               / max(np.max(np.abs(b)), 1e-3 * top)), g32, g64)
        out[name] = max(jax.tree_util.tree_leaves(errs))
    xla.configure(None)
    return out


def run_benchmark(*, models=("gan", "ddpm"), repeats: int = 5, quick: bool = False,
                  candidates: dict | None = None) -> dict:
    candidates = candidates or CANDIDATES
    ds = gdata.load("mnist5k")
    train_u8 = np.asarray(ds.train)
    batch_x = train_u8[:64].astype(np.float32) / 127.5 - 1.0
    record = {"benchmark": "xla_cpu_options", "quick": quick, "repeats": repeats,
              "jax_backend": jax.default_backend(), "candidates": candidates, "models": {}}
    for model in models:
        steps = {"gan": 20, "ddpm": 4}[model] // (2 if quick else 1)
        runs, compile_s = {}, {}
        for name, spec in candidates.items():
            for path in PATHS:
                xla.configure(spec)
                with loop_conv.forced_weight_grad(path):
                    config, state, step, finite, _ = _build(model, ds.example_shape, quick)
                    run, timings, _ = common.compiled_chunk(
                        step, state, train_u8, batch_size=config.train.batch_size,
                        steps=steps, seed=0, finite=finite)
                key = f"{name}|{path}"
                runs[key], compile_s[key] = run, timings["lower_and_compile_s"]
                print(f"  {model}: compiled {key} ({compile_s[key]:.1f} s)", flush=True)
        xla.configure(None)
        with common.CpuContention() as contention:
            times = common.interleaved(runs, repeats=repeats, warmup=1)
        ms = {k: statistics.median(v) / steps * 1e3 for k, v in times.items()}
        before = ms["|".join(BEFORE)]
        _, _, _, _, (loss, params) = _build(model, ds.example_shape, quick)
        errors = gradient_errors(loss, params, batch_x, candidates)
        record["models"][model] = {
            "steps_per_block": steps,
            "ms_per_step": ms, "speedup_vs_before": {k: before / v for k, v in ms.items()},
            "block_s": {k: common.summarize(v) for k, v in times.items()},
            "compile_s": compile_s,
            "grad_max_rel_err_vs_float64": errors,
            "other_processes_cpu_fraction": contention.fraction}
    return record


def summary_text(r: dict) -> str:
    lines = [f"XLA:CPU option sets x loop_conv weight-gradient paths (jax on "
             f"{r['jax_backend']}, medians of {r['repeats']} interleaved rounds)"]
    for model, m in r["models"].items():
        lines.append(f"  {model}: ms/step (speedup vs {'|'.join(BEFORE)}), gradient error "
                     "vs float64")
        for name in r["candidates"]:
            cells = "  ".join(f"{p}: {m['ms_per_step'][f'{name}|{p}']:7.1f} "
                              f"({m['speedup_vs_before'][f'{name}|{p}']:.2f}x)" for p in PATHS)
            lines.append(f"    {name:<11} {cells}   grad err "
                         f"{m['grad_max_rel_err_vs_float64'][name]:.1e}")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--models", default="gan,ddpm", help="comma-separated: gan, ddpm")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="small models, for smoke tests")
    a = p.parse_args(argv)
    record = run_benchmark(models=tuple(a.models.split(",")), repeats=a.repeats,
                           quick=a.quick)
    common.finish(a.out, record, summary_text)


if __name__ == "__main__":
    sys.exit(main())
