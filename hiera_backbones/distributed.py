"""Closing ``torch.distributed`` process groups while the interpreter is fully alive.

A launcher's worker that returns with its groups still open leaves them to interpreter
finalization, while gloo's C++ threads still run and may hold work that references Python
objects; a worker then sometimes aborts at exit ("terminate called without an active
exception", SIGABRT) after training and evaluation have finished (pytorch/pytorch#190489). The
framework tools (detectron2's ``launch`` workers, OpenMMLab's runners under ``torchrun``) close
their groups here instead.
"""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import Callable

__all__ = ["close_process_groups"]

logger = logging.getLogger(__name__)


def close_process_groups(wait_for_peers: bool = True,
                         forget: Callable[[], None] | None = None,
                         log: logging.Logger | None = None) -> int:
    """Closes every process group of this process; returns how many there were (0 outside a
    distributed run).

    Every rank first waits for the others (``wait_for_peers``; skip it after a failure, when a
    peer may never arrive), so that no rank tears down a group a peer still talks through. Then
    the groups are destroyed, ``forget`` drops references a framework keeps to them (caches,
    module globals), and what still points at them (a model's DDP reducer, data loaders, a
    runner's hooks: often in reference cycles) is collected now, not at exit. The outcome is
    logged to ``log`` (the framework's logger, so that it lands in the rank's log file)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return 0
    if wait_for_peers:
        dist.barrier()
    world = getattr(dist.distributed_c10d, "_world", None)
    groups = [weakref.ref(g) for g in getattr(world, "pg_map", ())]
    dist.destroy_process_group()  # every group, subgroups included
    if forget is not None:
        forget()
    gc.collect()
    alive = sum(ref() is not None for ref in groups)
    log = log or logger
    if alive:
        log.warning(
            f"{alive} of {len(groups)} process groups are still referenced after closing; "
            "they are freed only at interpreter exit"
        )
    else:
        log.info(f"closed {len(groups)} process groups")
    return len(groups)
