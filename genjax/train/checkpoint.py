"""Orbax checkpoints of the TrainState: asynchronous saves, keep the last N, resume.

A save copies the state to the host before returning and writes in the background;
Orbax writes into a temporary folder that is renamed when complete, so a process killed
mid-save leaves the previous checkpoint intact and the partial one is ignored.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
    """The checkpoint in the workdir does not fit the state this config builds."""


class Checkpointer:
    def __init__(self, directory: str, *, keep: int = 3, asynchronous: bool = True):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, enable_async_checkpointing=asynchronous, create=True))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state) -> None:
        self._manager.save(int(step), args=ocp.args.StandardSave(state))

    def restore_latest(self, like):
        """Restores the latest checkpoint into the structure, shapes, dtypes and shardings
        of ``like``; returns None when there is none."""
        step = self.latest_step()
        if step is None:
            return None
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
        try:
            return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointMismatchError(
                f"the checkpoint at {self.directory}/{step} does not match the model this "
                f"config builds ({type(e).__name__}: {str(e).splitlines()[0][:200]}); use a "
                f"new --workdir, or delete that folder to start over") from e

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
