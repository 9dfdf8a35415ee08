"""MCMC throughput on a 100-D Bayesian posterior: genjax's compiled MALA and HMC against the
same samplers written in NumPy and in PyTorch, in chain-steps per second and effective
samples per second.

    python -m benchmarks.mcmc_throughput [--out=benchmarks/results/mcmc_throughput.json]
        [--chains=128] [--repeats=7] [--cpu-devices=N] [--mala-step=0.01]
        [--hmc-step=0.085] [--leapfrog=10] [--quick]

Target: Bayesian multinomial (softmax) logistic regression on sklearn's ``load_digits``
(all 1,797 8x8 images, 10 classes): the 64 pixels reduced to 9 PCA components
(``PCA(9, random_state=0)``), standardised, plus an intercept: features [N, D = 10];
weights W [D, K = 10], 100 parameters, prior N(0, 1) on each; log p(W | data) =
sum_n log softmax(x_n W)[y_n] - |W|^2 / 2 + const. The likelihood cannot see a shift of
all classes' weights by one vector, so the posterior is the prior along those 10
directions (standard deviation 1) and much narrower across them (down to 0.07): the
Hessian's condition number is 214, which isotropic MALA pays for in autocorrelation.

Samplers (same settings for every implementation; the acceptance rates are measured and
reported): MALA with step h = 0.01 (acceptance about 0.6, near the optimal 0.57), and HMC
with 10 leapfrog steps of 0.085 and an identity mass (acceptance about 0.77). C = 128
chains start from draws of the Laplace approximation at the MAP (L-BFGS), so they are
near the posterior from the start; the untimed warm-up round is their burn-in.

Implementations, one block = ``steps_per_block`` steps of all C chains, the states kept
every ``keep_every`` steps and copied to host memory:

* ``genjax``: `genjax.mcmc.mala` / `genjax.mcmc.hmc` (one jitted lax.scan per block) with
  log p written in jnp (logits as one [C K, D] x [D, N] product, a max-shifted
  log-sum-exp over classes) and its gradient by jax autodiff. The chains are split over
  ``--cpu-devices`` jax CPU devices (default: one per core) with jax.sharding: XLA runs a
  program's element-wise loops on one core, so a device per core is how one program uses
  the whole CPU (as in nade_throughput). ``genjax_one_device``: the same, unsharded.
* ``numpy``: the same algorithm, vectorised over chains, float32, the gradient written
  out by hand (FY - softmax(X W)^T X - W), logits as C batched [K, D] x [D, N] products.
  NumPy runs element-wise work on one core.
* ``torch``: the same in PyTorch eager, float32, the gradient by autograd. Its thread
  count is chosen by timing 10 gradients at 1 and at <cores> threads (the faster wins;
  both recorded): on a shared 2-core machine another process on one core stalls OpenMP's
  second thread at every barrier.
Each draws its own noise (jax keys / numpy Generator / torch Generator).

Measures, from one run with every block of every implementation interleaved round-robin
(`common.interleaved`, one untimed warm-up round = burn-in, then ``--repeats`` rounds):
chain-steps/s = C steps_per_block / median block time; the ratios genjax / each peer;
ESS (`genjax.mcmc.effective_sample_size`, multi-chain, over the kept states of the timed
rounds) of the minimum and the median coordinate, and ESS/s = ESS / total time of the
timed blocks. ESS per step is a property of the Markov chain, the same for all three
implementations up to its estimation noise (the peer check shows they are the same
chain); ESS/s differs by speed.

Peer check (before timing; the run stops if it fails): from the same Laplace start, with
genjax's own normals and uniforms (`genjax.mcmc.step_keys`) handed to the peers, a few
steps of each sampler: every peer step starts from genjax's state before it and must
reach genjax's state after it (max |diff| <= 1e-3), with a log acceptance ratio within
0.05 nats of genjax's public ratio (`mcmc.mala_log_acceptance`, `mcmc.hmc_log_acceptance`) and
the same accept decision wherever log u is further than that from the ratio; genjax's own
decisions must be those of its public ratio too.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from typing import Callable

import numpy as np

from benchmarks import common

DEFAULT_OUT = os.path.join("benchmarks", "results", "mcmc_throughput.json")
TARGETS = {"speedup_vs_peers": 3.0}
SAMPLERS = ("mala", "hmc")
IMPLS = ("genjax", "genjax_one_device", "numpy", "torch")
PEERS = ("numpy", "torch")
TOLERANCES = {"state_abs": 1e-3, "log_ratio_abs": 0.05}
DEFAULTS = {"chains": 128, "mala_step": 0.01, "hmc_step": 0.085, "leapfrog": 10,
            "mala_block": 200, "mala_keep": 5, "hmc_block": 20, "hmc_keep": 1}
QUICK = {"chains": 16, "mala_block": 20, "mala_keep": 2, "hmc_block": 4, "hmc_keep": 1}


def _torch():
    import torch     # only the benchmark imports torch; genjax never does
    return torch


# ---------------------------------------------------------------------------- problem

@dataclasses.dataclass(frozen=True)
class Problem:
    """The posterior of softmax regression: features [N, D] (intercept first), labels [N]
    in 0..K-1, prior N(0, prior_scale^2) on every weight of W [D, K]."""
    features: np.ndarray
    labels: np.ndarray
    num_classes: int
    prior_scale: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.features.shape[1], self.num_classes

    @property
    def fy(self) -> np.ndarray:
        """X^T Y [D, K]: the gradient of sum_n logits[n, y_n] (constant in W)."""
        return self.features.T @ np.eye(self.num_classes)[self.labels]


def load_problem(*, components: int = 9, num_data: int | None = None,
                 prior_scale: float = 1.0) -> Problem:
    """load_digits (all 1,797 images, or the first ``num_data``) -> PCA(components),
    standardised, with an intercept column."""
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    digits = load_digits()
    x, y = digits.data[:num_data], digits.target[:num_data]
    z = PCA(components, random_state=0).fit_transform(x)
    z = (z - z.mean(0)) / z.std(0)
    features = np.concatenate([np.ones((len(z), 1)), z], 1)
    return Problem(features, np.asarray(y), 10, float(prior_scale))


def numpy_value_and_grad(problem: Problem, dtype=np.float32) -> Callable:
    """W [C, D, K] -> (log p(W | data) [C], its gradient [C, D, K]) in NumPy, the
    gradient written out: X^T Y - X^T softmax(X W) - W / prior_scale^2."""
    ft = np.ascontiguousarray(problem.features.T, dtype)                  # [D, N]
    f = np.ascontiguousarray(problem.features, dtype)                     # [N, D]
    fy = problem.fy.astype(dtype)                                         # [D, K]
    inv_var = 1.0 / problem.prior_scale ** 2

    def value_and_grad(w):
        logits = np.matmul(w.transpose(0, 2, 1), ft)                      # [C, K, N]
        m = logits.max(1, keepdims=True)
        logits -= m
        np.exp(logits, out=logits)
        s = logits.sum(1, keepdims=True)                                  # [C, 1, N]
        logits /= s                                                       # softmax
        lse = np.log(s[:, 0]) + m[:, 0]                                   # [C, N]
        lp = (w * fy).sum((1, 2)) - lse.sum(-1) - 0.5 * inv_var * (w ** 2).sum((1, 2))
        g = fy - np.matmul(logits, f).transpose(0, 2, 1) - inv_var * w
        return lp, g

    return value_and_grad


def genjax_log_prob(problem: Problem) -> Callable:
    """W [C, D, K] -> log p(W | data) [C] in jnp (differentiated by jax)."""
    import jax
    import jax.numpy as jnp
    ft = jnp.asarray(problem.features.T, jnp.float32)                    # [D, N]
    fy = jnp.asarray(problem.fy, jnp.float32)
    inv_var = 1.0 / problem.prior_scale ** 2

    def log_prob(w):
        c, d, k = w.shape
        logits = (w.transpose(0, 2, 1).reshape(c * k, d) @ ft).reshape(c, k, -1)  # [C, K, N]
        m = jax.lax.stop_gradient(logits.max(1, keepdims=True))
        lse = jnp.log(jnp.exp(logits - m).sum(1)) + m[:, 0]                        # [C, N]
        return (jnp.sum(w * fy, (1, 2)) - lse.sum(-1)
                - 0.5 * inv_var * jnp.sum(w ** 2, (1, 2)))

    return log_prob


def torch_value_and_grad(problem: Problem) -> Callable:
    """W [C, D, K] tensor -> (log p [C], gradient [C, D, K]) in PyTorch, by autograd."""
    torch = _torch()
    ft = torch.from_numpy(np.ascontiguousarray(problem.features.T, np.float32))
    fy = torch.from_numpy(problem.fy.astype(np.float32))
    inv_var = 1.0 / problem.prior_scale ** 2

    def log_prob(w):
        logits = torch.matmul(w.transpose(1, 2), ft)                      # [C, K, N]
        return ((w * fy).sum((1, 2)) - torch.logsumexp(logits, 1).sum(-1)
                - 0.5 * inv_var * (w ** 2).sum((1, 2)))

    def value_and_grad(w):
        with torch.enable_grad():
            w = w.detach().requires_grad_(True)
            lp = log_prob(w)
            (g,) = torch.autograd.grad(lp.sum(), w)
        return lp.detach(), g

    return value_and_grad


def laplace(problem: Problem):
    """(MAP [D, K], Cholesky factor of the Laplace covariance [D K, D K]), float64."""
    from scipy.optimize import minimize
    vg = numpy_value_and_grad(problem, np.float64)
    d, k = problem.shape

    def neg(w):
        lp, g = vg(w.reshape(1, d, k))
        return -lp[0], -g.ravel()

    w = minimize(neg, np.zeros(d * k), jac=True, method="L-BFGS-B",
                 options={"maxiter": 1000}).x.reshape(d, k)
    x = problem.features
    logits = x @ w
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    # -Hessian: sum_n (x_n x_n^T) kron (diag p_n - p_n p_n^T) + I / prior^2
    h = (np.einsum("nd,ne,nk,kl->dkel", x, x, p, np.eye(k))
         - np.einsum("nd,ne,nk,nl->dkel", x, x, p, p)).reshape(d * k, d * k)
    h += np.eye(d * k) / problem.prior_scale ** 2
    return w, np.linalg.cholesky(np.linalg.inv(h)), np.linalg.eigvalsh(h)


def laplace_start(problem: Problem, chains: int, seed: int = 0):
    """[C, D, K] float32 draws of the Laplace approximation, and its summary."""
    w, chol, eig = laplace(problem)
    d, k = problem.shape
    z = np.random.default_rng(seed).normal(size=(chains, d * k))
    x0 = (w.ravel() + z @ chol.T).reshape(chains, d, k).astype(np.float32)
    info = {"hessian_condition_number": float(eig.max() / eig.min()),
            "narrowest_posterior_sd": float(1 / np.sqrt(eig.max())),
            "widest_posterior_sd": float(1 / np.sqrt(eig.min())),
            "laplace_marginal_sd_median": float(np.median(np.sqrt(np.diag(chol @ chol.T))))}
    return x0, info


# ------------------------------------------------------------------------------ peers

def _log_q(to, frm, g_frm, h):
    """log N(to; frm + h/2 g, h I) without its constant, summed over (D, K): [C]."""
    r = to - frm - 0.5 * h * g_frm
    return -0.5 * (r * r).sum((1, 2)) / h


class NumpyPeer:
    """MALA and HMC steps on [C, D, K] float32 chains in NumPy, from a batched
    value_and_grad; a step takes its normals z [C, D, K] and uniforms u [C] as arguments."""
    name = "numpy"

    def __init__(self, value_and_grad: Callable):
        self.vg = value_and_grad

    def init(self, x):
        x = np.array(x, np.float32)
        return (x, *self.vg(x))

    @staticmethod
    def position(state):
        return np.array(state[0])

    @staticmethod
    def _select(ok, new, old):
        x, lp, g = old
        y, lp_y, g_y = new
        okx = ok[:, None, None]
        return np.where(okx, y, x), np.where(ok, lp_y, lp), np.where(okx, g_y, g)

    def mala_step(self, state, z, u, h: float):
        """-> (state, log ratio [C], accepted [C])."""
        x, lp, g = state
        h = np.float32(h)
        y = x + np.float32(0.5) * h * g + np.sqrt(h) * z
        lp_y, g_y = self.vg(y)
        log_r = lp_y - lp + _log_q(x, y, g_y, h) - _log_q(y, x, g, h)
        ok = np.log(u) < log_r
        return self._select(ok, (y, lp_y, g_y), state), log_r, ok

    def hmc_step(self, state, z, u, h: float, num_leapfrog: int):
        x, lp, g = state
        h, half = np.float32(h), np.float32(0.5 * h)
        y, p, g_y = x, z, g
        for _ in range(num_leapfrog):
            p = p + half * g_y
            y = y + h * p
            lp_y, g_y = self.vg(y)
            p = p + half * g_y
        log_r = (lp_y - 0.5 * (p * p).sum((1, 2))) - (lp - 0.5 * (z * z).sum((1, 2)))
        ok = np.log(u) < log_r
        return self._select(ok, (y, lp_y, g_y), state), log_r, ok

    def draws(self, rng, shape):
        return (rng.standard_normal(shape, dtype=np.float32),
                rng.random(shape[0], dtype=np.float32))

    @staticmethod
    def accept_prob(log_r):
        return float(np.mean(np.exp(np.minimum(np.nan_to_num(log_r, nan=-np.inf), 0.0))))


class TorchPeer(NumpyPeer):
    """The same steps on torch tensors (float32, CPU)."""
    name = "torch"

    def __init__(self, value_and_grad: Callable):
        self.vg = value_and_grad
        self.torch = _torch()

    def init(self, x):
        x = self.torch.from_numpy(np.array(x, np.float32))
        return (x, *self.vg(x))

    @staticmethod
    def position(state):
        return state[0].numpy().copy()

    def _select(self, ok, new, old):
        t = self.torch
        x, lp, g = old
        y, lp_y, g_y = new
        okx = ok[:, None, None]
        return t.where(okx, y, x), t.where(ok, lp_y, lp), t.where(okx, g_y, g)

    def _t(self, a):
        return a if isinstance(a, self.torch.Tensor) else self.torch.from_numpy(np.array(a))

    def mala_step(self, state, z, u, h: float):
        t = self.torch
        with t.no_grad():
            x, lp, g = state
            z, u = self._t(z), self._t(u)
            y = x + 0.5 * h * g + math.sqrt(h) * z
            lp_y, g_y = self.vg(y)
            log_r = lp_y - lp + _log_q(x, y, g_y, h) - _log_q(y, x, g, h)
            ok = t.log(u) < log_r
            return self._select(ok, (y, lp_y, g_y), state), log_r, ok

    def hmc_step(self, state, z, u, h: float, num_leapfrog: int):
        t = self.torch
        with t.no_grad():
            x, lp, g = state
            z, u = self._t(z), self._t(u)
            y, p, g_y = x, z, g
            for _ in range(num_leapfrog):
                p = p + 0.5 * h * g_y
                y = y + h * p
                lp_y, g_y = self.vg(y)
                p = p + 0.5 * h * g_y
            log_r = (lp_y - 0.5 * (p * p).sum((1, 2))) - (lp - 0.5 * (z * z).sum((1, 2)))
            ok = t.log(u) < log_r
            return self._select(ok, (y, lp_y, g_y), state), log_r, ok

    def draws(self, gen, shape):
        t = self.torch
        return t.randn(shape, generator=gen), t.rand(shape[0], generator=gen)

    def accept_prob(self, log_r):
        return float(self.torch.exp(self.torch.clamp(
            self.torch.nan_to_num(log_r, nan=-math.inf), max=0.0)).mean())


def make_peers(problem: Problem) -> dict:
    return {"numpy": NumpyPeer(numpy_value_and_grad(problem)),
            "torch": TorchPeer(torch_value_and_grad(problem))}


# ------------------------------------------------------------------------- genjax side

def genjax_block(problem: Problem, sampler: str, settings: dict, *, steps: int,
                 keep_every: int, keep: bool = True):
    """(key, x [C, D, K]) -> Chain: ``steps`` steps of genjax's sampler, jitted."""
    from genjax import mcmc, xla
    log_prob = genjax_log_prob(problem)

    def block(key, x):
        if sampler == "mala":
            return mcmc.mala(key, x, log_prob_fn=log_prob, step_size=settings["step_size"],
                             num_steps=steps, thin=keep_every, keep_samples=keep)
        return mcmc.hmc(key, x, log_prob_fn=log_prob, step_size=settings["step_size"],
                        num_leapfrog=settings["num_leapfrog"], num_steps=steps,
                        thin=keep_every, keep_samples=keep)

    return xla.jit(block)


def peer_check(problem: Problem, x0, settings: dict, *, steps: int = 3, seed: int = 0,
               peers: dict | None = None, sharding=None) -> dict:
    """Runs ``steps`` steps of each genjax sampler from x0 and replays them in each peer
    with genjax's draws (see the module docstring). Returns {"ok", sampler: {peer:
    {max_state_abs_diff, max_log_ratio_abs_diff, decisions_compared, decision_mismatches,
    accepted_fraction}}, "genjax_decisions_match_public_ratio": ...}."""
    import jax
    import jax.numpy as jnp

    from genjax import mcmc
    from genjax import random as grandom

    peers = make_peers(problem) if peers is None else peers
    log_prob = genjax_log_prob(problem)
    key = jax.random.key(seed)
    x0 = np.asarray(x0, np.float32)
    tol = TOLERANCES["log_ratio_abs"]
    out = {"tolerances": dict(TOLERANCES), "steps": steps}
    ok = True
    x_dev = jnp.asarray(x0) if sharding is None else jax.device_put(x0, sharding)
    for sampler in SAMPLERS:
        st = settings[sampler]
        chain = genjax_block(problem, sampler, st, steps=steps, keep_every=1)(key, x_dev)
        states = np.concatenate([x0[None], np.asarray(chain.samples)])    # [steps + 1, ...]
        h = st["step_size"]

        @jax.jit
        def reference(x, i):
            """genjax's draws of step i and its public log ratio from x with them."""
            k_z, k_u = mcmc.step_keys(key, i)
            z, u = grandom.normal(k_z, x.shape), grandom.uniform(k_u, (x.shape[0],))
            if sampler == "mala":
                g = jax.grad(lambda v: log_prob(v).sum())(x)
                y = x + 0.5 * h * g + math.sqrt(h) * z
                return z, u, mcmc.mala_log_acceptance(log_prob, x, y, h)
            return z, u, mcmc.hmc_log_acceptance(log_prob, x, z, h, st["num_leapfrog"])

        res = {name: {"max_state_abs_diff": 0.0, "max_log_ratio_abs_diff": 0.0,
                      "decisions_compared": 0, "decision_mismatches": 0}
               for name in peers}
        public_mismatch, accepted = 0, []
        for i in range(steps):
            x, x_next = states[i], states[i + 1]
            z, u, log_r = (np.asarray(a) for a in reference(jnp.asarray(x), i))
            took = np.any(x_next != x, axis=(1, 2))                          # [C]
            accepted.append(took)
            sure = np.abs(np.log(u) - log_r) > tol
            public_mismatch += int(np.sum((took != (np.log(u) < log_r)) & sure))
            for name, peer in peers.items():
                state = peer.init(x)
                if sampler == "mala":
                    state, p_log_r, p_ok = peer.mala_step(state, z, u, h)
                else:
                    state, p_log_r, p_ok = peer.hmc_step(state, z, u, h, st["num_leapfrog"])
                p_log_r = np.asarray(p_log_r, np.float64)
                p_ok = np.asarray(p_ok)
                same = p_ok == took
                r = res[name]
                r["decisions_compared"] += int(sure.sum())
                r["decision_mismatches"] += int(np.sum(~same & sure))
                diff = np.abs(peer.position(state) - x_next).max((1, 2))
                r["max_state_abs_diff"] = max(r["max_state_abs_diff"],
                                              float(np.max(diff[same], initial=0.0)))
                lr = np.abs(p_log_r - log_r)
                r["max_log_ratio_abs_diff"] = max(r["max_log_ratio_abs_diff"],
                                                  float(np.nan_to_num(lr, nan=np.inf).max()))
        for name, r in res.items():
            r["ok"] = bool(r["max_state_abs_diff"] <= TOLERANCES["state_abs"]
                           and r["max_log_ratio_abs_diff"] <= tol
                           and r["decision_mismatches"] == 0)
            ok &= r["ok"]
        frac = float(np.mean(accepted))
        out[sampler] = {**res, "genjax_decision_mismatches_vs_public_ratio": public_mismatch,
                        "accepted_fraction": frac}
        # the check means something only if steps were both accepted and rejected
        ok &= public_mismatch == 0 and 0.0 < frac < 1.0
    out["ok"] = bool(ok)
    return out


# ---------------------------------------------------------------------------- runners

class Runner:
    """One implementation of one sampler as a timed block: run() advances the chains by
    ``steps`` steps, keeps the states every ``keep_every`` steps (host memory), and
    returns the work done (chain-steps). ``kept`` holds one [S_b, C, D, K] array per
    block, ``accept`` one mean acceptance probability per block."""

    def __init__(self, run_block: Callable, chains: int, steps: int):
        self.run_block, self.chains, self.steps = run_block, chains, steps
        self.kept: list[np.ndarray] = []
        self.accept: list[float] = []

    def __call__(self):
        samples, acc = self.run_block()
        self.kept.append(samples)
        self.accept.append(acc)
        return self.chains * self.steps


def genjax_runner(problem, sampler, settings, x0, *, steps, keep_every, sharding, seed):
    import jax
    block = genjax_block(problem, sampler, settings, steps=steps, keep_every=keep_every)
    key = jax.random.key(seed)
    holder = {"x": jax.device_put(np.asarray(x0), sharding), "b": 0}
    jax.block_until_ready(block(key, holder["x"]))            # compile outside the timing

    def run_block():
        chain = block(jax.random.fold_in(key, holder["b"]), holder["x"])
        holder["x"], holder["b"] = chain.x, holder["b"] + 1
        samples = np.asarray(chain.samples)
        return samples, float(np.mean(np.asarray(chain.accept_rate)))

    return Runner(run_block, x0.shape[0], steps)


def peer_runner(peer, sampler, settings, x0, *, steps, keep_every, seed, threads=None):
    if peer.name == "torch":
        gen = peer.torch.Generator().manual_seed(seed)
    else:
        gen = np.random.default_rng(seed)
    holder = {"state": peer.init(x0)}
    shape = x0.shape
    h = settings["step_size"]

    def run_block():
        if threads is not None:
            peer.torch.set_num_threads(threads)
        state, kept, acc = holder["state"], [], 0.0
        for i in range(1, steps + 1):
            z, u = peer.draws(gen, shape)
            if sampler == "mala":
                state, log_r, _ = peer.mala_step(state, z, u, h)
            else:
                state, log_r, _ = peer.hmc_step(state, z, u, h, settings["num_leapfrog"])
            acc += peer.accept_prob(log_r)
            if i % keep_every == 0:
                kept.append(peer.position(state))
        if not np.all(np.isfinite(kept[-1])):
            raise FloatingPointError(f"the {peer.name} {sampler} chains became non-finite")
        holder["state"] = state
        return np.stack(kept), acc / steps

    return Runner(run_block, shape[0], steps)


def calibrate_torch_threads(problem: Problem, x0, cores: int, calls: int = 10) -> dict:
    """Median seconds of one torch gradient at 1 and at ``cores`` threads; picks the
    faster."""
    torch = _torch()
    vg = torch_value_and_grad(problem)
    x = torch.from_numpy(np.asarray(x0, np.float32))
    times = {}
    for n in sorted({1, cores}):
        torch.set_num_threads(n)
        times[n] = common.median_time(lambda: vg(x), repeats=calls, warmup=2)
    best = min(times, key=times.get)
    torch.set_num_threads(best)
    return {"threads": best, "grad_s_by_threads": {str(k): v for k, v in times.items()}}


# -------------------------------------------------------------------------- benchmark

def _ess_summary(kept: list[np.ndarray]) -> dict:
    from genjax.mcmc import effective_sample_size
    samples = np.concatenate(kept)                                      # [S, C, D, K]
    ess = effective_sample_size(samples)
    return {"min": float(np.min(ess)), "median": float(np.median(ess)),
            "draws_per_chain": int(samples.shape[0]), "chains": int(samples.shape[1])}


def run_benchmark(*, chains: int = 128, repeats: int = 7, quick: bool = False,
                  mala_step: float = 0.01, hmc_step: float = 0.085, leapfrog: int = 10,
                  blocks: dict | None = None, pause_s: float = 0.05, seed: int = 0) -> dict:
    import jax

    from genjax.train import sharding as gsharding

    cores = common.core_count()
    problem = load_problem()
    d, k = problem.shape
    settings = {"mala": {"step_size": mala_step},
                "hmc": {"step_size": hmc_step, "num_leapfrog": leapfrog}}
    sizes = dict(DEFAULTS, **(QUICK if quick else {}), **(blocks or {}))
    mesh = gsharding.data_mesh()
    ndev = mesh.size
    if chains % ndev:
        raise SystemExit(f"error: --chains={chains} must be a multiple of the {ndev} jax "
                         "devices (or pass --cpu-devices)")
    sharded = gsharding.batch_sharded(mesh)
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    x0, posterior = laplace_start(problem, chains, seed)

    torch_cal = calibrate_torch_threads(problem, x0, cores)        # sets the threads
    t = time.perf_counter()
    peer = peer_check(problem, x0, settings, seed=seed, sharding=sharded)
    peer["seconds"] = time.perf_counter() - t
    if not peer["ok"]:
        raise SystemExit("error: the numpy / torch samplers do not compute genjax's chains "
                         f"(tolerances {TOLERANCES}): {peer}")
    peers = make_peers(problem)

    runners = {}
    for sampler in SAMPLERS:
        steps, keep = sizes[f"{sampler}_block"], sizes[f"{sampler}_keep"]
        st = settings[sampler]
        kw = dict(steps=steps, keep_every=keep)
        runners[(sampler, "genjax")] = genjax_runner(problem, sampler, st, x0, sharding=sharded,
                                                     seed=seed + 1, **kw)
        runners[(sampler, "genjax_one_device")] = genjax_runner(
            problem, sampler, st, x0, sharding=one, seed=seed + 2, **kw)
        runners[(sampler, "numpy")] = peer_runner(peers["numpy"], sampler, st, x0,
                                                  seed=seed + 3, **kw)
        runners[(sampler, "torch")] = peer_runner(peers["torch"], sampler, st, x0,
                                                  seed=seed + 4, threads=torch_cal["threads"],
                                                  **kw)
    fns = {f"{s}/{i}": r for (s, i), r in runners.items()}
    load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    with common.CpuContention() as contention:
        times = common.interleaved(fns, repeats=repeats, warmup=1, pause_s=pause_s)

    out = {}
    met = {}
    for sampler in SAMPLERS:
        steps = sizes[f"{sampler}_block"]
        rate, ess, ess_s, acc, block_s = {}, {}, {}, {}, {}
        for impl in IMPLS:
            r, ts = runners[(sampler, impl)], times[f"{sampler}/{impl}"]
            rate[impl] = chains * steps / float(np.median(ts))
            e = _ess_summary(r.kept[1:])                     # the warm-up block is burn-in
            ess[impl] = e
            ess_s[impl] = {"min": e["min"] / sum(ts), "median": e["median"] / sum(ts)}
            acc[impl] = float(np.mean(r.accept[1:]))
            block_s[impl] = common.summarize(ts)
        ratio = {p: rate["genjax"] / rate[p] for p in PEERS}
        best = max(PEERS, key=rate.get)
        grads = 1 if sampler == "mala" else settings[sampler]["num_leapfrog"]
        out[sampler] = {
            "settings": {**settings[sampler], "steps_per_block": steps,
                         "keep_every": sizes[f"{sampler}_keep"],
                         "gradients_per_step": grads},
            "chain_steps_per_s": rate,
            "gradients_per_s": {i: v * grads for i, v in rate.items()},
            "ratio_genjax_over": ratio,
            "ratio_genjax_one_device_over": {p: rate["genjax_one_device"] / rate[p]
                                             for p in PEERS},
            "best_peer": best,
            "ratio_genjax_over_best_peer": rate["genjax"] / rate[best],
            "accept_rate": acc,
            "ess": ess,
            "ess_per_s": ess_s,
            "ess_per_s_ratio_genjax_over": {
                p: {q: ess_s["genjax"][q] / ess_s[p][q] for q in ("min", "median")}
                for p in PEERS},
            "ess_per_chain_step_min": {i: ess[i]["min"] / (chains * steps * repeats)
                                       for i in IMPLS},
            "block_s": block_s,
        }
        met[sampler] = bool(rate["genjax"] / rate[best] >= TARGETS["speedup_vs_peers"])

    return {
        "benchmark": "mcmc_throughput",
        "quick": quick,
        "config": {
            "problem": {
                "model": "Bayesian multinomial (softmax) logistic regression, N(0, "
                         f"{problem.prior_scale:g}^2) prior on every weight",
                "data": "sklearn load_digits, all images, 64 pixels -> PCA(9, "
                        "random_state=0), standardised, + intercept",
                "num_data": int(problem.features.shape[0]), "num_features": d,
                "num_classes": k, "num_params": d * k, "prior_scale": problem.prior_scale,
                **posterior,
            },
            "chains": chains,
            "start": "draws of the Laplace approximation at the MAP (L-BFGS); the untimed "
                     "warm-up round is burn-in",
            "repeats": repeats, "warmup_rounds": 1,
            "jax_devices": ndev, "jax_backend": jax.default_backend(),
            "torch_threads": torch_cal["threads"],
            "torch_thread_calibration": torch_cal,
            "dtype": "float32",
        },
        "samplers": out,
        "peer_check": peer,
        "load_average_before_timing": load_before,
        "other_processes_cpu_fraction": contention.fraction,
        "targets": {**TARGETS, **{f"{s}_met": v for s, v in met.items()}},
    }


def summary_text(r: dict) -> str:
    c, p = r["config"], r["config"]["problem"]
    lines = [f"MCMC on softmax regression, load_digits (N={p['num_data']}, "
             f"{p['num_params']} params, condition number "
             f"{p['hessian_condition_number']:.0f}), {c['chains']} chains; jax on "
             f"{c['jax_devices']} {c['jax_backend']} device(s), torch "
             f"{c['torch_threads']} thread(s); medians of {c['repeats']} interleaved rounds"]
    for sampler, s in r["samplers"].items():
        st = s["settings"]
        head = f"step {st['step_size']}" + (f", {st['num_leapfrog']} leapfrog"
                                            if "num_leapfrog" in st else "")
        lines.append(f"  {sampler.upper()} ({head}):")
        for impl in IMPLS:
            e, es = s["ess"][impl], s["ess_per_s"][impl]
            ratio = (f"  genjax / {impl} = {s['ratio_genjax_over'][impl]:.2f}x (one device "
                     f"{s['ratio_genjax_one_device_over'][impl]:.2f}x)" if impl in PEERS else "")
            lines.append(f"    {impl:18s} {s['chain_steps_per_s'][impl]:9.0f} chain-steps/s, "
                         f"accept {s['accept_rate'][impl]:.2f}, ESS min/median "
                         f"{e['min']:.0f}/{e['median']:.0f} -> {es['min']:.1f}/"
                         f"{es['median']:.1f} per s{ratio}")
    tg = r["targets"]
    lines.append(f"  target genjax >= {tg['speedup_vs_peers']}x the faster peer: "
                 + ", ".join(f"{s} {'met' if tg[f'{s}_met'] else 'NOT met'}"
                             for s in SAMPLERS))
    pc = r["peer_check"]
    lines.append("  peer check (same start and draws, " f"{pc['steps']} steps): " + "; ".join(
        f"{s} {n} state within {pc[s][n]['max_state_abs_diff']:.1e}, log ratio within "
        f"{pc[s][n]['max_log_ratio_abs_diff']:.1e}" for s in SAMPLERS for n in PEERS))
    lines += common.busy_lines(r)
    return "\n".join(lines)


def parse_args(argv=None):
    p = common.base_parser("benchmarks.mcmc_throughput", __doc__, DEFAULT_OUT,
                           repeats_help="interleaved timed rounds (default 7; 2 with --quick)",
                           quick_help="16 chains, short blocks: seconds, for smoke tests")
    p.add_argument("--chains", type=int, default=None,
                   help="chains per implementation (default 128; 16 with --quick)")
    p.add_argument("--cpu-devices", type=int, default=None,
                   help="jax CPU devices to split the chains over (default: one per core)")
    p.add_argument("--mala-step", type=float, default=DEFAULTS["mala_step"],
                   help="MALA step size h (default 0.01)")
    p.add_argument("--hmc-step", type=float, default=DEFAULTS["hmc_step"],
                   help="HMC leapfrog step (default 0.085)")
    p.add_argument("--leapfrog", type=int, default=DEFAULTS["leapfrog"],
                   help="HMC leapfrog steps per proposal (default 10)")
    args = common.parse_positive(p, argv, ("repeats", "chains", "cpu_devices", "leapfrog"))
    for name in ("mala_step", "hmc_step"):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    common.set_cpu_devices(args.cpu_devices or common.core_count())
    q = args.quick
    record = run_benchmark(chains=args.chains or (QUICK["chains"] if q else DEFAULTS["chains"]),
                           repeats=args.repeats or (2 if q else 7), quick=q,
                           mala_step=args.mala_step, hmc_step=args.hmc_step,
                           leapfrog=args.leapfrog)
    return common.finish(args.out, record, summary_text)


if __name__ == "__main__":
    main(sys.argv[1:])
