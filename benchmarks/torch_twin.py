"""Weights shared between a genjax model and its PyTorch twin in the peer benchmarks:
genjax parameter paths, layout conversion (conv kernels HWIO <-> OIHW, dense [in, out] <->
[out, in]), copying genjax's weights into the twin, reading the twin's gradients back in
genjax's layout, and genjax's learning-rate schedule as per-step factors for a torch loop.
Only the benchmarks import torch; genjax never does."""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np


def flat_params(tree) -> dict:
    """{path: array} of a genjax parameter state (or its gradients), path as in
    ``nnx.State.flat_state()``: ("down", 0, "conv1", "kernel")."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        keys = tuple(getattr(k, "key", getattr(k, "idx", None)) for k in path
                     if not (isinstance(k, jax.tree_util.GetAttrKey) and k.name == "value"))
        out[keys] = np.asarray(leaf, np.float32)
    return out


def torch_tensor(model, path):
    """The torch parameter at a genjax path: kernel -> weight, scale -> weight."""
    mod = model
    for k in path[:-1]:
        mod = mod[k] if isinstance(k, int) else getattr(mod, k)
    name = path[-1]
    return getattr(mod, {"kernel": "weight", "scale": "weight"}.get(name, name))


def to_torch_layout(a):
    """conv kernel [kh, kw, in, out] -> [out, in, kh, kw]; dense [in, out] -> [out, in]."""
    return a.transpose(3, 2, 0, 1) if a.ndim == 4 else a.T if a.ndim == 2 else a


def to_genjax_layout(a):
    return a.transpose(2, 3, 1, 0) if a.ndim == 4 else a.T if a.ndim == 2 else a


def load_genjax_params(model, params, *, as_is=()):
    """Copies a genjax model's parameters (its ``nnx.State``, or any pytree of that
    structure) into the torch twin ``model`` in place; every torch parameter is set.
    Paths in ``as_is`` are copied without a layout change (e.g. a per-pixel [D, K]
    bias that is not a dense kernel)."""
    import torch
    flat = flat_params(params)
    seen = set()
    with torch.no_grad():
        for path, a in flat.items():
            p = torch_tensor(model, path)
            v = torch.from_numpy(np.array(a if path in as_is else to_torch_layout(a),
                                          np.float32, order="C"))
            if p.shape != v.shape:
                raise ValueError(f"{'.'.join(map(str, path))}: torch {tuple(p.shape)} vs "
                                 f"genjax {tuple(a.shape)}")
            p.copy_(v)
            seen.add(id(p))
    missing = [n for n, p in model.named_parameters() if id(p) not in seen]
    if missing:
        raise ValueError(f"torch parameters without a genjax counterpart: {missing}")
    return model


def torch_grads_as_genjax(model, paths, *, as_is=()) -> dict:
    """{path: the torch parameter's .grad in genjax's layout} for genjax ``paths``
    (``as_is`` as in `load_genjax_params`)."""
    # copies: clipping and the optimiser later change the tensors in place
    out = {}
    for p in paths:
        g = torch_tensor(model, p).grad.detach().cpu().numpy()
        out[p] = (g if p in as_is else to_genjax_layout(g)).copy()
    return out


def torch_params_as_genjax(model, paths) -> dict:
    return {p: to_genjax_layout(torch_tensor(model, p).detach().cpu().numpy()).copy()
            for p in paths}


def lr_factors(config) -> np.ndarray:
    """genjax's learning-rate multiplier at each step (warmup, schedule), as the torch
    loop applies it: [train.num_steps]."""
    from genjax.train import make_optimizer
    _, _, schedule = make_optimizer(config.optim, config.train.num_steps)
    steps = jnp.arange(max(int(config.train.num_steps), 1))
    return np.asarray(jax.vmap(lambda s: jnp.asarray(schedule(s), jnp.float32))(steps))


def adam_runner(config, model, data, batch_loss, steps: int, *, threads: int, max_s: float,
                fused: bool = False):
    """run(steps=steps) -> steps done: eager training steps of the torch twin ``model``
    (``batch_loss(x) -> scalar``, whatever preprocessing it does, then backward,
    clip_grad_norm_ at config.optim.grad_clip and Adam at genjax's schedule's learning
    rate) with ``threads`` intra-op threads, on batches of ``data`` (a tensor, examples
    first) drawn without replacement from a fresh randperm each epoch; fewer steps when a
    block has taken ``max_s`` seconds (with its threads starved by other processes a
    torch block can slow down 100-fold)."""
    import torch
    o = config.optim
    if o.name != "adam" or o.weight_decay:
        raise ValueError("the torch peer is written for Adam without weight decay")
    opt = torch.optim.Adam(model.parameters(), lr=o.lr, betas=(o.b1, o.b2), eps=o.eps,
                           fused=fused or None)
    weights = list(model.parameters())
    lr, clip, factors = float(o.lr), float(o.grad_clip), lr_factors(config)
    bsz, n = int(config.train.batch_size), len(data)
    holder = {"perm": torch.randperm(n), "pos": 0, "count": 0}

    def run(steps=steps):
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        for done in range(1, steps + 1):
            if holder["pos"] + bsz > n:
                holder["perm"], holder["pos"] = torch.randperm(n), 0
            x = data[holder["perm"][holder["pos"]:holder["pos"] + bsz]]
            holder["pos"] += bsz
            loss = batch_loss(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(weights, clip)
            for g in opt.param_groups:
                g["lr"] = lr * float(factors[min(holder["count"], len(factors) - 1)])
            opt.step()
            holder["count"] += 1
            if time.perf_counter() - t0 > max_s:
                break
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError("torch loss became non-finite in the benchmark")
        return done

    return run
