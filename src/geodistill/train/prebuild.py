"""Build DeepSpeed's just-in-time C++ ops once, at install time, instead of inside the first run.

On a CPU machine ``deepspeed.initialize`` compiles its shared-memory communication op
(``ShareMemCommBuilder``) into torch's extension cache the first time any process needs it:
about a minute of g++ on two cores, with every other DeepSpeed process of the machine waiting
on the same file lock. ``make`` runs ``python -m geodistill.train.prebuild`` after installing
the package so that minute is paid once, by the install, not by a training run or a test.
Where the accelerator has no such op (CUDA nodes, DeepSpeed builds with ops pre-compiled) this
does nothing.
"""

from __future__ import annotations

import sys
import time


def prebuild_deepspeed_ops() -> str:
    """Compile (or find cached) the ops ``deepspeed.initialize`` loads on this accelerator."""
    import torch

    from geodistill.train.zero import quiet_deepspeed

    cpu = not torch.cuda.is_available()
    quiet_deepspeed(cpu=cpu)  # the accelerator a CPU run picks, without DeepSpeed's and torch's GPU warnings
    try:
        import deepspeed.ops
        from deepspeed.accelerator import get_accelerator
    except ImportError:
        return "deepspeed is not installed: nothing to build"
    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is None or not deepspeed.ops.__compatible_ops__.get(builder.NAME, False):
        return "no DeepSpeed op to pre-build on this accelerator"
    start = time.perf_counter()
    try:
        builder.load(verbose=False)
    except Exception as err:  # noqa: BLE001 - no compiler here: DeepSpeed builds it at first use instead
        return f"DeepSpeed {builder.absolute_name()} not pre-built ({type(err).__name__}: {err}); it builds at first use"
    where = " (CPU: torch sees no CUDA device)" if cpu else ""
    return f"DeepSpeed {builder.absolute_name()} ready in {time.perf_counter() - start:.1f} s{where}"


if __name__ == "__main__":
    print(prebuild_deepspeed_ops(), file=sys.stderr)
