"""Several processes (hosts): who writes, and how the processes find each other.

`is_main_process()` is the one test every writer of files uses: only process 0 writes
metrics.jsonl, results.json, config.json, figures, caches and sweep tables.
(Issue 15: initialisation from config fields / environment variables with a timeout is
being added here.)
"""

from __future__ import annotations

import jax


def is_main_process() -> bool:
    """True in process 0 (and in every single-process run)."""
    return jax.process_index() == 0
