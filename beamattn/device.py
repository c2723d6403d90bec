"""Where tensors live: the ``--device`` option of every ``beamattn`` command.

``resolve_device`` turns the text of ``--device`` into a concrete
:class:`torch.device` or raises a one-line :class:`ValueError` naming the
option, the value and what was expected (the CLI prints it with exit code 2).

Accepted: ``cpu`` (the default), ``cuda`` (the current CUDA device, made
explicit as ``cuda:N`` so that ``tensor.device == device`` holds), ``cuda:N``,
and ``mps`` on Apple silicon. Asking for a device this machine does not have is
an error, never a silent fall-back to the CPU: a run that was meant for the GPU
and quietly ran on the CPU would report wrong timings and surprise nobody until
much later.

Convention used across the package: random numbers that fix results (channel
geometry, measurement noise, minibatch indices) are drawn from CPU generators
and then moved to the device, so one seed gives the same draws on every device
(common random numbers across devices); everything computed from them runs on
the device.
"""

from __future__ import annotations

import re

import torch

__all__ = ["resolve_device", "describe_device"]

_CUDA = re.compile(r"cuda(?::(\d+))?")


def resolve_device(text: str | torch.device | None, option: str = "--device") -> torch.device:
    """The device named by ``text``: ``"cpu"`` (also for None), ``"cuda"``, ``"cuda:N"`` or ``"mps"``.

    Args:
        text: the option's value (case and surrounding blanks ignored), or a ``torch.device``.
        option: the option's name, used in error messages.

    Returns:
        A concrete device: ``cuda`` becomes ``cuda:<current device>``.

    Raises:
        ValueError: one line naming ``option``, the value and what was expected, when the name is
            unknown, when CUDA (or MPS) is asked for but not available, or when the CUDA index is out of
            range.
    """
    if text is None:
        return torch.device("cpu")
    raw = str(text)
    name = raw.strip().lower()
    if name == "cpu":
        return torch.device("cpu")
    m = _CUDA.fullmatch(name)
    if m:
        if not torch.cuda.is_available():
            raise ValueError(f"'{option}' = {raw!r} but no CUDA device is available "
                             f"(torch.cuda.is_available() is False); use {option} cpu")
        count = torch.cuda.device_count()
        index = torch.cuda.current_device() if m.group(1) is None else int(m.group(1))
        if index >= count:
            raise ValueError(f"'{option}' = {raw!r} but this machine has {count} CUDA device(s); expected "
                             f"cuda:0 to cuda:{count - 1}")
        return torch.device("cuda", index)
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"'{option}' = {raw!r} but no MPS device is available "
                             f"(torch.backends.mps.is_available() is False); use {option} cpu")
        return torch.device("mps")
    raise ValueError(f"'{option}' = {raw!r} is not a device; expected cpu, cuda, cuda:N or mps")


def describe_device(device: torch.device | str) -> str:
    """``"cpu"``, or e.g. ``"cuda:0 (NVIDIA H200)"``: the device and, for CUDA, its name (for result files)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        index = torch.cuda.current_device() if dev.index is None else dev.index
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(dev)
