"""Orbax checkpoints of the TrainState: asynchronous saves, keep the last N, resume.

A save copies the state to the host before returning and writes in the background;
Orbax writes into a temporary folder that is renamed when complete, so a process killed
mid-save leaves the previous checkpoint intact and the partial one is ignored.

Restoring tells a different model from a damaged checkpoint: a checkpoint whose stored
tree (array names and shapes) differs from the state's is a CheckpointMismatchError; one
that cannot be read (truncated or missing files, a disk error) is damaged, and the newest
checkpoint that restores is used instead. The damaged ones are moved aside to
``damaged-<step>`` (Orbax ignores those names), so the run can save those steps again.

Several processes: every process creates the Checkpointer and calls save / restore /
wait / close at the same points, as Orbax's CheckpointManager expects (its default
primary host, process 0, writes the metadata and finalises each step; each process
writes the array shards it owns; the workdir must be a folder every process sees).
Only process 0 moves damaged folders aside; the others wait for it.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from genjax.train import distributed
from genjax.train.writers import log


class CheckpointMismatchError(ValueError):
    """The checkpoint in the workdir does not fit the state this config builds."""


class CheckpointDamagedError(RuntimeError):
    """No checkpoint in the workdir can be read."""


# What reading a damaged checkpoint raises: OSError (missing or unreadable files),
# ValueError (JSON that does not parse; TensorStore's DATA_LOSS / OUT_OF_RANGE /
# NOT_FOUND statuses), KeyError (a missing item). Anything else (e.g. the device running
# out of memory) is not a fault of the files and propagates.
_UNREADABLE = (OSError, ValueError, KeyError, EOFError)


def _leaf_name(path) -> str:
    """Orbax's name of a leaf ("opt_state.0.mu.w") from its jax key path."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return ".".join(parts)


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    if len(text) > 160:
        text = text[:160].rsplit(" ", 1)[0] + " ..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class Checkpointer:
    def __init__(self, directory: str, *, keep: int = 3, asynchronous: bool = True):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, enable_async_checkpointing=asynchronous, create=True),
            item_handlers=ocp.StandardCheckpointHandler())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state) -> None:
        self._manager.save(int(step), args=ocp.args.StandardSave(state))

    def restore_latest(self, like):
        """Restores the newest readable checkpoint into the structure, shapes, dtypes and
        shardings of ``like``; returns None when there is none. Damaged newer ones are
        reported, moved aside and skipped; raises CheckpointMismatchError when the newest
        readable one holds a different tree, CheckpointDamagedError when none is
        readable."""
        steps = sorted(self._manager.all_steps(), reverse=True)
        if not steps:
            return None
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
        damaged = []
        for step in steps:
            try:
                stored = self._stored_shapes(step)
            except _UNREADABLE as e:
                damaged.append((step, e))
                continue
            verified = self._check_structure(step, stored, like)
            try:
                state = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
            except _UNREADABLE as e:
                if not verified:                    # cannot tell: say both
                    raise CheckpointMismatchError(
                        f"the checkpoint at {self.directory}/{step} cannot be restored into "
                        f"the model this config builds ({_first_line(e)}): a different model "
                        "or a damaged checkpoint; use a new --workdir, or delete that folder "
                        "to start over") from e
                damaged.append((step, e))           # the tree matched: the files are bad
                continue
            if damaged:
                self._set_aside([s for s, _ in damaged])
                if distributed.is_main_process():
                    log(f"warning: the checkpoint{'s' if len(damaged) > 1 else ''} at "
                        "step " + ", ".join(f"{s} ({_first_line(e)})" for s, e in damaged)
                        + f" in {self.directory} could not be read (moved to "
                        f"damaged-<step>); resuming from step {step}, the newest that "
                        "restores")
            return state
        raise CheckpointDamagedError(
            f"no checkpoint in {self.directory} can be read: "
            + "; ".join(f"step {s}: {_first_line(e)}" for s, e in damaged)
            + "; delete that folder to start over, or use a new --workdir")

    def _stored_shapes(self, step: int) -> dict:
        """{leaf name: shape} of the tree saved at ``step`` (reads only its metadata)."""
        meta = self._manager.item_metadata(step)
        tree = getattr(meta, "tree", meta)
        if tree is None:
            raise ValueError("no metadata")
        leaves = jax.tree_util.tree_leaves(tree)
        return {getattr(m, "name", None): tuple(getattr(m, "shape", ()) or ()) for m in leaves}

    def _check_structure(self, step: int, stored: dict, like) -> bool:
        """Raises CheckpointMismatchError when the saved tree's array names or shapes
        differ from ``like``'s; returns whether the comparison could be made."""
        want = {_leaf_name(p): tuple(x.shape) for p, x in
                jax.tree_util.tree_flatten_with_path(like)[0]}
        if None in stored:                          # leaves Orbax did not name
            return False
        if stored == want:
            return True
        order = lambda k: (not k.startswith("params"), k)   # noqa: E731 - params first
        missing = sorted(set(want) - set(stored), key=order)
        extra = sorted(set(stored) - set(want), key=order)
        shapes = sorted((k for k in set(want) & set(stored) if want[k] != stored[k]),
                        key=order)
        what = "; ".join(part for part in (
            f"{len(missing)} arrays not in the checkpoint (e.g. {missing[0]})" if missing else "",
            f"{len(extra)} arrays only in the checkpoint (e.g. {extra[0]})" if extra else "",
            (f"{len(shapes)} arrays of another shape (e.g. {shapes[0]}: "
             f"{stored[shapes[0]]} saved, {want[shapes[0]]} now)") if shapes else "") if part)
        raise CheckpointMismatchError(
            f"the checkpoint at {self.directory}/{step} holds a different model than this "
            f"config builds ({what}); use a new --workdir, or delete that folder to start "
            "over")

    def _set_aside(self, steps) -> None:
        """Renames damaged step folders to damaged-<step> so that Orbax ignores them and
        the run can write those steps again."""
        if jax.process_index() == 0:
            for step in steps:
                src = os.path.join(self.directory, str(step))
                dst, i = os.path.join(self.directory, f"damaged-{step}"), 1
                while os.path.exists(dst):
                    dst, i = os.path.join(self.directory, f"damaged-{step}.{i}"), i + 1
                if os.path.isdir(src):
                    os.rename(src, dst)
        # the other processes reload only once process 0 has moved the folders
        distributed.barrier("genjax.checkpoint.set_aside." + "_".join(map(str, steps)))
        self._manager.reload()

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
