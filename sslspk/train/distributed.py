"""torchrun/DDP helpers: process group from the environment, rank-0 checks, all-reduce/gather."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed(device: str) -> tuple[int, int, int]:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); returns (rank, world, local_rank).

    gloo on CPU, nccl on CUDA. A plain single process needs no group at all.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return rank, world, local_rank


def die_with_launcher() -> None:
    """Under torchrun, have Linux SIGKILL this worker when its parent (the torchrun agent) dies.

    torchrun starts its workers in their own sessions, so a ``kill -9`` of the launcher's process
    group (``steps/train.sh``) misses them and a worker would train on beside a rerun: its
    ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` ties it to the agent. A worker whose agent is already gone
    (re-parented to init) stops at once. No-op outside torchrun or Linux."""
    import signal
    import sys

    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1   # <linux/prctl.h>
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    if os.getppid() == 1:
        os.kill(os.getpid(), signal.SIGKILL)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over processes (identity on one process)."""
    if is_distributed():
        x = x.clone()
        dist.all_reduce(x)
        x /= dist.get_world_size()
    return x


def any_process(flag: bool, device: torch.device | str = "cpu") -> bool:
    """Whether ``flag`` is true on any process (a collective: every process calls it at the same point)."""
    if not is_distributed():
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_gather_cat(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (same shape on every process) along dim 0 over processes, no gradient."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends each process the sum over processes of the gradients of its part."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad.chunk(dist.get_world_size())[dist.get_rank()]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` over processes along dim 0; gradients flow back to each process's own part
    (summed over the losses of all processes), as sslsv's ``gather`` (identity on one process)."""
    return _GatherWithGrad.apply(x) if is_distributed() else x


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0
