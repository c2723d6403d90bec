"""A simulated CUDA device, so that "tensors stay on the device" can be tested on a machine without one.

On a CPU-only machine every tensor is a CPU tensor, so a tensor that *should* be on the device but
silently stays on the CPU (a ``torch.zeros(...)`` without ``device=``) cannot be told apart. Here a
:class:`SimTensor` holds a real CPU tensor (``inner``) but is a tensor on ``cuda:0`` as far as the code
under test can see (``x.device``, ``x.is_cuda``). :class:`SimulatedCuda`, a ``TorchFunctionMode``, runs
every torch call on the CPU tensors inside (so autograd works on them, custom autograd Functions
included) and wraps the results again, applying CUDA's rules:

- factories with ``device="cuda..."`` give SimTensors; ``.to("cuda")`` / ``.cuda()`` of a CPU tensor
  give a SimTensor copy (counted in ``uploads``); ``.cpu()`` / ``.to("cpu")`` give CPU tensors
  (``downloads``);
- an op mixing a SimTensor with a CPU tensor of one or more dimensions raises, as CUDA does
  ("Expected all tensors to be on the same device"); 0-dim CPU tensors are allowed, as on CUDA;
- CPU index tensors into a SimTensor, and copies between a SimTensor and a CPU tensor through
  ``x[i] = y`` or ``copy_``, are allowed (CUDA does them) but are transfers the code did not ask for
  by name: recorded in ``implicit``; a SimTensor index into a CPU tensor raises, as on CUDA;
- ``.numpy()`` of a SimTensor raises, as on CUDA;
- reading values back (``.item()``, ``.tolist()``, ``bool()``, ``float()``, ``int()``, ``torch.equal``)
  is a host sync: recorded in ``syncs`` with the beamattn source line that asked for it.

Every result computed from a SimTensor is a SimTensor, so a tensor the code computes from device
tensors ends up on the CPU only through one of the recorded paths. The numbers are the CPU's (the same
kernels run), so results can be compared with a CPU run exactly. What cannot be simulated raises an
AssertionError instead of passing silently (``tensor.data = <cuda tensor>``).
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

SIM = torch.device("cuda", 0)
_PKG = str(Path(__file__).resolve().parent.parent / "beamattn")

_HOST_READS = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "__complex__", "equal", "allclose"}
_INDEXING = {"__getitem__", "__setitem__"}
# Module.to's helpers: they parse arguments or compare tensor types, and create no tensor.
_METADATA = {"_parse_to", "_has_compatible_shallow_copy_type"}


class SimTensor(torch.Tensor):
    """A tensor on the simulated ``cuda:0``; its data (and autograd history) is the CPU tensor ``inner``."""

    inner: torch.Tensor

    @staticmethod
    def __new__(cls, inner: torch.Tensor):
        r = torch.Tensor._make_wrapper_subclass(cls, inner.size(), strides=inner.stride(),
                                                storage_offset=inner.storage_offset(), dtype=inner.dtype,
                                                layout=inner.layout, device=SIM, requires_grad=False)
        r.inner = inner
        return r

    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise AssertionError(f"simulated device: {func} reached the dispatcher (not intercepted by SimulatedCuda)")


def _caller() -> str:
    """The innermost beamattn source line on the stack (where the code under test asked for this)."""
    f = sys._getframe(2)
    while f is not None:
        if f.f_code.co_filename.startswith(_PKG):
            return f"{Path(f.f_code.co_filename).relative_to(Path(_PKG).parent)}:{f.f_lineno}"
        f = f.f_back
    return "<outside beamattn>"


def _unwrap(x):
    return x.inner if isinstance(x, SimTensor) else x


def _wrap(x):
    return SimTensor(x) if isinstance(x, torch.Tensor) and not isinstance(x, SimTensor) else x


def _is_cuda(dev) -> bool:
    return isinstance(dev, (str, torch.device)) and torch.device(dev).type == "cuda"


def _is_getter(func, name: str) -> bool:
    return getattr(func, "__name__", None) == "__get__" and getattr(func, "__self__", None) is getattr(torch.Tensor,
                                                                                                        name)


def _big_cpu(tensors) -> list[torch.Tensor]:
    return [t for t in tensors if isinstance(t, torch.Tensor) and not isinstance(t, SimTensor) and t.dim() > 0]


class SimulatedCuda(TorchFunctionMode):
    """See the module docstring. ``with SimulatedCuda() as sim: ...`` then inspect ``sim.syncs`` etc."""

    def __init__(self) -> None:
        super().__init__()
        self.uploads: collections.Counter = collections.Counter()  # location -> count
        self.downloads: collections.Counter = collections.Counter()
        self.syncs: collections.Counter = collections.Counter()
        self.implicit: collections.Counter = collections.Counter()

    def __enter__(self):
        # ``module.to(device)`` normally moves a parameter in place (``param.data = moved``), which a wrapper
        # cannot model (the parameter object would stay a CPU tensor); PyTorch's switch makes it install the
        # moved tensor as a new Parameter instead — the same tensors are moved either way.
        self._overwrite = torch.__future__.get_overwrite_module_params_on_conversion()
        torch.__future__.set_overwrite_module_params_on_conversion(True)
        # Custom autograd Functions (sparsemax, entmax) are applied in C++, past this mode: apply them to the
        # CPU tensors inside, so that autograd records them there like every other op.
        self._apply = torch.autograd.Function.__dict__["apply"]
        original = self._apply.__func__

        def apply(cls, *args, **kwargs):
            if not any(isinstance(t, SimTensor) for t in tree_flatten((args, kwargs))[0]):
                return original(cls, *args, **kwargs)
            if _big_cpu(tree_flatten((args, kwargs))[0]):
                raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two "
                                   f"devices, cuda:0 and cpu! (simulated device: {cls.__name__}.apply at {_caller()})")
            return tree_map(_wrap, original(cls, *tree_map(_unwrap, args), **tree_map(_unwrap, kwargs)))

        torch.autograd.Function.apply = classmethod(apply)
        return super().__enter__()

    def __exit__(self, *exc):
        torch.autograd.Function.apply = self._apply
        torch.__future__.set_overwrite_module_params_on_conversion(self._overwrite)
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        flat = tree_flatten((args, kwargs))[0]
        sims = [t for t in flat if isinstance(t, SimTensor)]
        self_sim = bool(args) and isinstance(args[0], SimTensor)
        if name in _METADATA:
            return func(*tree_map(_unwrap, args), **kwargs)
        if self_sim and _is_getter(func, "device"):
            return SIM
        if self_sim and _is_getter(func, "is_cuda"):
            return True
        if self_sim and _is_getter(func, "is_cpu"):
            return False
        if self_sim and name == "get_device":
            return 0
        if self_sim and name == "numpy":
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor "
                            "to host memory first. (simulated device)")
        if name == "__set__" and getattr(func, "__self__", None) is torch.Tensor.data and not self_sim \
                and isinstance(args[1], SimTensor):
            raise AssertionError(f"simulated device: `tensor.data = <cuda tensor>` at {_caller()} changes a CPU "
                                 "tensor's device in place, which cannot be simulated; create the tensor on the "
                                 "device instead (e.g. nn.Parameter(x.to(device)))")

        # Moves and factories decide where the result goes; everything else follows its inputs.
        target = None
        if name in ("to", "cuda", "cpu") and args and isinstance(args[0], torch.Tensor) and (self_sim or name != "cpu"):
            args, kwargs, target = self._move(name, args, kwargs)
        elif "device" in kwargs and _is_cuda(kwargs["device"]):
            kwargs["device"] = "cpu"
            target = "sim"

        if sims and target is None:
            if name in _INDEXING:
                self._check_indexing(name, args)
            elif name == "copy_":
                if _big_cpu(flat):
                    self.implicit[f"copy_ between cuda and cpu at {_caller()}"] += 1
            elif _big_cpu(flat):
                raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                                   f"cuda:0 and cpu! (simulated device: {name} at {_caller()}, cpu tensor of shape "
                                   f"{tuple(_big_cpu(flat)[0].shape)})")
            if name in _HOST_READS:
                self.syncs[f"{name} at {_caller()}"] += 1

        un_args, un_kwargs = tree_map(_unwrap, (args, kwargs))
        out = func(*un_args, **un_kwargs)
        if target == "cpu" or (target is None and not sims) or name in _HOST_READS:
            return out
        if target == "copy":
            return SimTensor(out if out is not un_args[0] else out.clone())
        if self_sim and out is un_args[0]:
            return args[0]  # an in-place method returning self: the caller's object
        if "out" in kwargs and isinstance(kwargs["out"], SimTensor) and out is un_kwargs["out"]:
            return kwargs["out"]
        return tree_map(_wrap, out)

    def _check_indexing(self, name, args) -> None:
        target, index = args[0], args[1]
        index_flat = tree_flatten(index)[0]
        if not isinstance(target, SimTensor):
            if any(isinstance(t, SimTensor) for t in index_flat):
                raise RuntimeError(f"indices should be either on cpu or on the same device as the indexed tensor "
                                   f"(cpu) (simulated device: {name} at {_caller()})")
            self.implicit[f"{name}: cuda value into a cpu tensor at {_caller()}"] += 1
            return
        if _big_cpu(index_flat):
            self.implicit[f"{name}: cpu index into a cuda tensor at {_caller()}"] += 1
        if name == "__setitem__" and _big_cpu([args[2]]):
            self.implicit[f"{name}: cpu value into a cuda tensor at {_caller()}"] += 1

    def _move(self, name, args, kwargs):
        """(args, kwargs, target) for ``.to`` / ``.cuda`` / ``.cpu``, any cuda device replaced by the CPU.

        target: ``"copy"`` (a CPU tensor going to the device: wrap a copy), ``"sim"`` (stays on the
        device), ``"cpu"`` (ends on the CPU).
        """
        src_sim = isinstance(args[0], SimTensor)
        if name == "cpu":
            self.downloads[_caller()] += 1
            return args, kwargs, "cpu"
        if name == "cuda":
            if src_sim:
                return args[:1], {}, "sim"
            self.uploads[_caller()] += 1
            return args[:1], {}, "copy"
        dest = None
        rest = list(args[1:])
        for i, a in enumerate(rest):
            if isinstance(a, (str, torch.device)):
                dest, rest[i] = torch.device(a), "cpu"
            elif isinstance(a, torch.Tensor):  # .to(other): other's device and dtype
                dest, rest[i] = (SIM if isinstance(a, SimTensor) else a.device), a.dtype
        if kwargs.get("device") is not None:
            dest, kwargs["device"] = torch.device(kwargs["device"]), "cpu"
        args = (args[0], *rest)
        if dest is None or (dest.type == "cuda") == src_sim:
            return args, kwargs, "sim" if src_sim else "cpu"  # no change of device
        if dest.type == "cuda":
            self.uploads[_caller()] += 1
            return args, kwargs, "copy"
        self.downloads[_caller()] += 1
        return args, kwargs, "cpu"

    def report(self) -> str:
        """Every recorded transfer and sync, one per line (for assertion messages)."""
        lines = []
        for title, counter in (("implicit", self.implicit), ("syncs", self.syncs), ("uploads", self.uploads),
                               ("downloads", self.downloads)):
            lines += [f"{title}: {n} x {where}" for where, n in sorted(counter.items())]
        return "\n".join(lines)
