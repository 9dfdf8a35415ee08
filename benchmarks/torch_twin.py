"""Weights shared between a genjax model and its PyTorch twin in the peer benchmarks:
genjax parameter paths, layout conversion (conv kernels HWIO <-> OIHW, dense [in, out] <->
[out, in]), copying genjax's weights into the twin, reading the twin's gradients back in
genjax's layout, and genjax's learning-rate schedule as per-step factors for a torch loop.
Only the benchmarks import torch; genjax never does."""

from __future__ import annotations

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
    return getattr(mod, {"kernel": "weight", "scale": "weight", "bias": "bias"}[path[-1]])


def to_torch_layout(a):
    """conv kernel [kh, kw, in, out] -> [out, in, kh, kw]; dense [in, out] -> [out, in]."""
    return a.transpose(3, 2, 0, 1) if a.ndim == 4 else a.T if a.ndim == 2 else a


def to_genjax_layout(a):
    return a.transpose(2, 3, 1, 0) if a.ndim == 4 else a.T if a.ndim == 2 else a


def load_genjax_params(model, params):
    """Copies a genjax U-Net's parameters (its ``nnx.State``, or any pytree of that
    structure) into the torch twin ``model`` in place; every torch parameter is set."""
    import torch
    flat = flat_params(params)
    seen = set()
    with torch.no_grad():
        for path, a in flat.items():
            p = torch_tensor(model, path)
            v = torch.from_numpy(np.array(to_torch_layout(a), np.float32, order="C"))
            if p.shape != v.shape:
                raise ValueError(f"{'.'.join(map(str, path))}: torch {tuple(p.shape)} vs "
                                 f"genjax {tuple(a.shape)}")
            p.copy_(v)
            seen.add(id(p))
    missing = [n for n, p in model.named_parameters() if id(p) not in seen]
    if missing:
        raise ValueError(f"torch parameters without a genjax counterpart: {missing}")
    return model


def torch_grads_as_genjax(model, paths) -> dict:
    """{path: the torch parameter's .grad in genjax's layout} for genjax ``paths``."""
    # copies: clipping and the optimiser later change the tensors in place
    return {p: to_genjax_layout(torch_tensor(model, p).grad.detach().cpu().numpy()).copy()
            for p in paths}


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
