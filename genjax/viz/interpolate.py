"""Paths between latent codes for interpolation strips."""

from __future__ import annotations

import jax.numpy as jnp


def lerp(z0, z1, num: int):
    """Linear path: z0, z1 [..., Z] -> [num, ..., Z] from z0 to z1 inclusive."""
    t = jnp.linspace(0.0, 1.0, num).reshape((num,) + (1,) * jnp.ndim(z0))
    return (1.0 - t) * z0 + t * z1


def slerp(z0, z1, num: int, eps: float = 1e-7):
    """Spherical path (Shoemake): keeps the norm profile of Gaussian samples.
    z0, z1 [..., Z] -> [num, ..., Z]; falls back to lerp for (anti)parallel pairs."""
    t = jnp.linspace(0.0, 1.0, num).reshape((num,) + (1,) * jnp.ndim(z0))
    n0 = z0 / jnp.linalg.norm(z0, axis=-1, keepdims=True)
    n1 = z1 / jnp.linalg.norm(z1, axis=-1, keepdims=True)
    omega = jnp.arccos(jnp.clip(jnp.sum(n0 * n1, -1, keepdims=True), -1.0, 1.0))
    so = jnp.sin(omega)
    safe = so > eps
    w0 = jnp.where(safe, jnp.sin((1.0 - t) * omega) / jnp.where(safe, so, 1.0), 1.0 - t)
    w1 = jnp.where(safe, jnp.sin(t * omega) / jnp.where(safe, so, 1.0), t)
    return w0 * z0 + w1 * z1
