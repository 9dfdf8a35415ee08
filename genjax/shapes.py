"""Trace-time shape checks for the pure objectives, with one message format.

A `Shapes` checker belongs to one call of one function. It matches each argument's
static shape against a spec such as ``"N D"`` or ``"B *E"`` and binds the symbols on first
use, so that the next argument with the same symbol must agree:

    s = Shapes("losses.vae.log_likelihood")
    s("x", x, "N *E")                # binds N and E
    s("logits", logits, "N *E")      # must now equal x's shape
    # ValueError: losses.vae.log_likelihood: logits has shape (128, 784) but expected
    #   [N, *E] = (128, 1) (N, E as in x of shape (128, 1))

Spec tokens, separated by spaces: a name (one axis, bound to its size), an integer (an
axis of that size), ``*Name`` (any number of axes, bound to their sizes as a tuple; at most
one per spec) and ``...`` (any number of axes, not bound). Only ``.shape`` is read, never a
value, so a check costs nothing at run time and works on tracers under ``jit`` and
``vmap`` (where the shapes are those of one vmapped element). Python scalars have shape
().
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def shape_of(a) -> tuple[int, ...]:
    """The static shape of an array, a tracer or a Python / NumPy scalar."""
    return tuple(jnp.shape(a))


def _axes(n: int) -> str:
    return f"{n} axis" if n == 1 else f"{n} axes"


class Shapes:
    """Shape checks for one call of ``where`` (a name such as "losses.gmm.elbo"); every
    failure is a ``ValueError`` naming the argument, its shape and the expected one."""

    def __init__(self, where: str):
        self.where = where
        self.dims: dict[str, int | tuple[int, ...]] = {}
        self.origin: dict[str, str] = {}     # symbol -> "as in x of shape (128, 1)"

    # -------------------------------------------------------------------- helpers
    def fail(self, message: str):
        raise ValueError(f"{self.where}: {message}")

    def _render(self, tokens) -> str:
        """The expected shape with bound symbols filled in: "(128, 784)" or "(N, 3)"."""
        parts = []
        for tok in tokens:
            name = tok[1:] if tok.startswith("*") else tok
            if name in self.dims:
                v = self.dims[name]
                if isinstance(v, tuple):
                    parts.extend(str(d) for d in v)
                else:
                    parts.append(str(v))
            else:
                parts.append(tok)
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"

    def _sources(self, tokens) -> str:
        """" (N, E as in x of shape (128, 1))" for the bound symbols of ``tokens``."""
        by_origin: dict[str, list[str]] = {}
        for tok in tokens:
            name = tok[1:] if tok.startswith("*") else tok
            if name in self.origin and name not in by_origin.get(self.origin[name], []):
                by_origin.setdefault(self.origin[name], []).append(name)
        if not by_origin:
            return ""
        return " (" + "; ".join(f"{', '.join(names)} {origin}"
                                for origin, names in by_origin.items()) + ")"

    def _expected(self, tokens) -> str:
        spec = "[" + ", ".join(tokens) + "]"
        if any((t[1:] if t.startswith("*") else t) in self.dims for t in tokens):
            spec += f" = {self._render(tokens)}"
        return spec + self._sources(tokens)

    # --------------------------------------------------------------------- checks
    def __call__(self, name: str, a, spec: str) -> tuple[int, ...]:
        """Checks that ``a`` (argument ``name``) has shape ``spec``, binding its symbols;
        returns the shape."""
        shape = shape_of(a)
        tokens = spec.split()
        var = [i for i, t in enumerate(tokens) if t.startswith("*") or t == "..."]
        assert len(var) <= 1, f"at most one variadic token per spec: {spec!r}"

        def bad(detail=""):
            self.fail(f"{name} has shape {shape} but expected {self._expected(tokens)}"
                      + detail)

        if var:
            i = var[0]
            pre, post = tokens[:i], tokens[i + 1:]
            if len(shape) < len(pre) + len(post):
                bad(f": at least {_axes(len(pre) + len(post))}")
            split = len(shape) - len(post)
            pairs = list(zip(pre, shape[:len(pre)])) + [(tokens[i], shape[len(pre):split])] \
                + list(zip(post, shape[split:]))
        else:
            if len(shape) != len(tokens):
                bad(f": {_axes(len(tokens))}")
            pairs = list(zip(tokens, shape))
        new = {}
        for tok, size in pairs:
            if tok == "...":
                continue
            sym = tok[1:] if tok.startswith("*") else tok
            if sym.isdigit():
                if size != int(sym):
                    bad()
            elif sym in self.dims or sym in new:
                if (self.dims[sym] if sym in self.dims else new[sym]) != size:
                    bad()
            else:
                new[sym] = size
        for sym, size in new.items():
            self.dims[sym] = size
            self.origin[sym] = f"as in {name} of shape {shape}"
        return shape

    def bind(self, sym: str, size, origin: str):
        """Binds ``sym`` to ``size`` (an int, or a tuple for a ``*sym``) computed from
        other arguments; ``origin`` says how, e.g. "= num_samples * B"."""
        self.dims[sym] = size
        self.origin[sym] = origin

    def broadcastable(self, name: str, a, target_name: str, target_shape) -> tuple[int, ...]:
        """Checks that ``a`` broadcasts to ``target_shape`` (the shape of ``target_name``)
        without widening it: same or fewer axes, each 1 or equal, aligned on the right."""
        shape, target = shape_of(a), tuple(target_shape)
        ok = len(shape) <= len(target) and all(
            s in (1, t) for s, t in zip(reversed(shape), reversed(target)))
        if not ok:
            self.fail(f"{name} has shape {shape} but expected a shape that broadcasts to "
                      f"{target} (the shape of {target_name}; each axis 1 or equal, aligned "
                      f"on the right)")
        return shape

    def event(self, main_name: str, main, event_ndim: int, **others) -> tuple[int, ...]:
        """The check of an element-wise density over trailing event axes: ``main`` has at
        least ``event_ndim`` axes, every other argument broadcasts against it, and none
        widens its event axes (their trailing ``event_ndim`` axes are 1 or equal to
        ``main``'s). Returns the broadcast shape."""
        if not isinstance(event_ndim, (int, np.integer)) or event_ndim < 0:
            self.fail(f"event_ndim = {event_ndim!r} must be a non-negative int")
        shape = shape_of(main)
        if len(shape) < event_ndim:
            self.fail(f"{main_name} has shape {shape} but expected [..., *E] with "
                      f"event_ndim = {event_ndim}: at least {_axes(event_ndim)}")
        event = shape[len(shape) - event_ndim:]
        out = shape
        for name, a in others.items():
            s = shape_of(a)
            s_event = s[max(len(s) - event_ndim, 0):]
            if not all(d in (1, e) for d, e in zip(reversed(s_event), reversed(event))):
                self.fail(f"{name} has shape {s} but expected [..., *E] whose event axes "
                          f"broadcast to E = {event} of {main_name} of shape {shape} "
                          f"(event_ndim = {event_ndim})")
            try:
                out = jnp.broadcast_shapes(out, s)
            except ValueError:
                self.fail(f"{name} has shape {s} but expected a shape that broadcasts "
                          f"against {out} ({main_name} has shape {shape})")
        return out

    def positive_int(self, name: str, v) -> int:
        """A static count (a number of samples, of dimensions): a Python int >= 1."""
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            self.fail(f"{name} = {v!r} must be a Python int >= 1 (a static count)")
        return v
