"""Optimizers, and their registry: pluggable the same way ops are.

An optimizer is a class derived from :class:`Optimizer` with a ``name``, a
pydantic model ``Hyper`` of its hyper-parameters (``extra="forbid"``, so a
typo is an error), and one method, :meth:`Optimizer.update`, that changes the
parameters in place. Per-parameter state (momentum buffers, moments) lives in
``self.state[param_name][slot]`` as arrays, which is all a checkpoint needs.

Built in::

    sgd       p -= lr * g                       (hyper: lr, momentum=0, nesterov=False)
    momentum  v = mu v + g;  p -= lr * v        (sgd with momentum=0.9 by default)
    adam      Kingma & Ba (2015), bias-corrected (hyper: lr, beta1, beta2, eps)

Plugins add optimizers exactly as they add ops: a module (``--plugin`` file or
module name, or the entry-point group ``graphengine.optimizers``) exports
``OPTIMIZERS``, a list of :class:`Optimizer` subclasses. A module may export
both ``OPS`` and ``OPTIMIZERS``, or only one of them. Duplicate names are an error naming both sources.

Examples
--------
>>> import numpy as np
>>> params = {"w": np.array([1.0, 2.0])}
>>> opt = make_optimizer("sgd", {"lr": 0.5}, params)
>>> opt.update(params, {"w": np.array([1.0, -1.0])})
>>> params["w"].tolist()
[0.5, 2.5]
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import TrainingError
from ..registry import PluginRegistry

__all__ = [
    "Optimizer",
    "SGD",
    "Momentum",
    "Adam",
    "OptimizerRegistry",
    "default_optimizers",
    "make_optimizer",
    "OPTIMIZERS",
    "ENTRY_POINT_GROUP",
]

ENTRY_POINT_GROUP = "graphengine.optimizers"

Array = np.ndarray


class Optimizer:
    """Base class of optimizers.

    Subclasses set ``name`` and ``Hyper`` and implement :meth:`update`.

    Parameters
    ----------
    hyper : Hyper
        The validated hyper-parameters.
    params : mapping of str to ndarray
        The parameters it will update (used to size the state).

    Attributes
    ----------
    hyper : BaseModel
    state : dict of str to dict of str to ndarray
        Per-parameter state arrays, saved in checkpoints.
    t : int
        Number of updates applied so far.
    """

    name: ClassVar[str] = ""
    doc: ClassVar[str] = ""

    class Hyper(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, hyper: BaseModel, params: Mapping[str, Array]) -> None:
        self.hyper = hyper
        self.t = 0
        self.state: dict[str, dict[str, Array]] = {name: self.init_state(value) for name, value in params.items()}

    def init_state(self, value: Array) -> dict[str, Array]:
        """The initial state for one parameter (default: none)."""
        return {}

    def update(self, params: dict[str, Array], grads: Mapping[str, Array]) -> None:
        """Apply one step: change ``params[name]`` in place for each name in ``grads``."""
        raise NotImplementedError

    # Checkpoints: state as flat named arrays, so they fit in one .npz.
    def state_arrays(self) -> dict[str, Array]:
        arrays = {f"{name}/{slot}": value for name, slots in self.state.items() for slot, value in slots.items()}
        arrays["t"] = np.array(self.t, dtype=np.int64)
        return arrays

    def load_state_arrays(self, arrays: Mapping[str, Array]) -> None:
        """Restore from :meth:`state_arrays`; raises TrainingError on a mismatch."""
        for name, slots in self.state.items():
            for slot, value in slots.items():
                key = f"{name}/{slot}"
                if key not in arrays or arrays[key].shape != value.shape:
                    raise TrainingError(
                        f"optimizer {self.name!r}: checkpoint has no state {key!r} of shape {value.shape}"
                    )
                value[...] = arrays[key]
        self.t = int(arrays["t"]) if "t" in arrays else 0


class SGD(Optimizer):
    name = "sgd"
    doc = "stochastic gradient descent, optionally with (Nesterov) momentum"

    class Hyper(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        lr: float = Field(0.01, gt=0, description="learning rate")
        momentum: float = Field(0.0, ge=0, lt=1, description="momentum coefficient; 0 is plain SGD")
        nesterov: bool = Field(False, description="Nesterov momentum")
        weight_decay: float = Field(0.0, ge=0, description="L2 penalty added to the gradient")

    def init_state(self, value: Array) -> dict[str, Array]:
        return {"velocity": np.zeros_like(value)} if self.hyper.momentum else {}  # type: ignore[attr-defined]

    def update(self, params: dict[str, Array], grads: Mapping[str, Array]) -> None:
        h: Any = self.hyper
        self.t += 1
        for name, g in grads.items():
            p = params[name]
            if h.weight_decay:
                g = g + h.weight_decay * p
            if h.momentum:
                v = self.state[name]["velocity"]
                v *= h.momentum
                v += g
                g = g + h.momentum * v if h.nesterov else v
            p -= (h.lr * g).astype(p.dtype, copy=False)


class Momentum(SGD):
    name = "momentum"
    doc = "SGD with momentum 0.9 by default (v = mu v + g; p -= lr v)"

    class Hyper(SGD.Hyper):
        momentum: float = Field(0.9, ge=0, lt=1, description="momentum coefficient")


class Adam(Optimizer):
    name = "adam"
    doc = "Adam (Kingma & Ba 2015), bias-corrected first and second moments"

    class Hyper(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        lr: float = Field(0.001, gt=0, description="learning rate")
        beta1: float = Field(0.9, ge=0, lt=1)
        beta2: float = Field(0.999, ge=0, lt=1)
        eps: float = Field(1e-8, gt=0)
        weight_decay: float = Field(0.0, ge=0, description="L2 penalty added to the gradient")

    def __init__(self, hyper: BaseModel, params: Mapping[str, Array]) -> None:
        super().__init__(hyper, params)
        self._flat = _FlatMoments.build(params)
        if self._flat is not None:  # the moments become views of two flat buffers (checkpoints see no difference)
            self.state = {name: {"m": self._flat.m_views[name], "v": self._flat.v_views[name]} for name in params}

    def init_state(self, value: Array) -> dict[str, Array]:
        return {"m": np.zeros_like(value), "v": np.zeros_like(value)}

    def update(self, params: dict[str, Array], grads: Mapping[str, Array]) -> None:
        h: Any = self.hyper
        self.t += 1
        correct1, correct2 = 1 - h.beta1**self.t, np.sqrt(1 - h.beta2**self.t)
        flat = self._flat
        if flat is not None and flat.fits(params, grads):
            # One pass over all parameters at once: the same operations, element by element, as below.
            g = flat.gather(grads)
            if h.weight_decay:
                g = g + h.weight_decay * flat.gather(params, reuse=False)
            # Into buffers made once (no temporaries): the products of the per-parameter path, in its dtypes.
            m, v, tmp, den = flat.m, flat.v, flat.tmp, flat.den
            m *= h.beta1
            m += np.multiply(g, 1 - h.beta1, out=tmp)
            v *= h.beta2
            np.multiply(g, g, out=tmp)
            tmp *= 1 - h.beta2
            v += tmp
            np.divide(np.sqrt(v, out=tmp), correct2, out=den)  # den has the dtype of sqrt(v) / correct2 (float64)
            den += h.eps
            np.divide(np.multiply(m, h.lr / correct1, out=tmp), den, out=flat.delta)  # cast as .astype does
            flat.apply(params)
            return
        for name, g in grads.items():
            p, s = params[name], self.state[name]
            if h.weight_decay:
                g = g + h.weight_decay * p
            s["m"] *= h.beta1
            s["m"] += (1 - h.beta1) * g
            s["v"] *= h.beta2
            s["v"] += (1 - h.beta2) * (g * g)
            # lr * m_hat / (sqrt(v_hat) + eps), with the bias corrections folded in as PyTorch does
            p -= ((h.lr / correct1) * s["m"] / (np.sqrt(s["v"]) / correct2 + h.eps)).astype(p.dtype, copy=False)


class _FlatMoments:
    """Adam's moments and step for every parameter in one flat buffer each (parameters of one dtype).

    Per-parameter updates cost a dozen small numpy calls per parameter; on a small model those
    calls, not the arithmetic, are the optimizer's time. Elementwise, nothing changes.
    """

    def __init__(self, params: Mapping[str, Array], dtype: np.dtype) -> None:
        self.dtype = dtype
        self.names = list(params)
        self.shapes = {name: params[name].shape for name in self.names}
        size = sum(params[name].size for name in self.names)
        self.m, self.v, self.delta = (np.zeros(size, dtype) for _ in range(3))
        self._gathered, self.tmp = np.empty(size, dtype), np.empty(size, dtype)
        # sqrt(v) / correct2 divides by a float64 number: float64 for float32 moments, as in the per-parameter path
        self.den = np.empty(size, np.result_type(dtype, np.float64))
        self.m_views, self.v_views, self.delta_views = {}, {}, {}
        start = 0
        for name in self.names:
            stop = start + params[name].size
            shape = self.shapes[name]
            self.m_views[name] = self.m[start:stop].reshape(shape)
            self.v_views[name] = self.v[start:stop].reshape(shape)
            self.delta_views[name] = self.delta[start:stop].reshape(shape)
            start = stop

    @classmethod
    def build(cls, params: Mapping[str, Array]) -> "_FlatMoments | None":
        dtypes = {np.asarray(p).dtype for p in params.values()}
        if len(params) < 2 or len(dtypes) != 1 or next(iter(dtypes)).kind != "f":
            return None
        return cls(params, dtypes.pop())

    def fits(self, params: Mapping[str, Array], grads: Mapping[str, Array]) -> bool:
        """The flat path applies: gradients for exactly these parameters, all of the buffers' dtype and shapes."""
        if len(grads) != len(self.names):
            return False
        dtype, shapes = self.dtype, self.shapes
        for name, g in grads.items():
            p = params.get(name)
            shape = shapes.get(name)
            if shape is None or p is None or g.dtype != dtype or p.dtype != dtype or g.shape != shape:
                return False
        return True

    def apply(self, params: dict[str, Array]) -> None:
        """``params[name] -= delta`` for every parameter."""
        for name, delta in self.delta_views.items():
            params[name] -= delta

    def gather(self, arrays: Mapping[str, Array], *, reuse: bool = True) -> Array:
        """The arrays end to end, in one buffer reused by every call (``reuse``) or a new one."""
        return np.concatenate([arrays[name].ravel() for name in self.names], out=self._gathered if reuse else None)


#: The built-in optimizers (what a plugin module exports, too).
OPTIMIZERS: list[type[Optimizer]] = [SGD, Momentum, Adam]


def _is_optimizer(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, Optimizer) and bool(obj.name)


def _optimizer_name(cls: type[Optimizer]) -> str:
    return cls.name


class OptimizerRegistry(PluginRegistry[type[Optimizer]]):
    """Optimizer classes by name, with where each came from: the plugin registry of ops, for optimizers.

    An unknown name is a :class:`TrainingError` with "did you mean".

    Examples
    --------
    >>> reg = default_optimizers()
    >>> reg["adam"].__name__, reg.sources["adam"]
    ('Adam', 'graphengine')
    """

    def __init__(self) -> None:
        super().__init__(
            "optimizer",
            ENTRY_POINT_GROUP,
            "OPTIMIZERS",
            _is_optimizer,
            _optimizer_name,
            "an Optimizer subclass with a name",
        )

    @property
    def classes(self) -> dict[str, type[Optimizer]]:
        """Optimizer classes by name (the registry's entries)."""
        return self.entries

    def __getitem__(self, name: str) -> type[Optimizer]:
        if name not in self.entries:
            raise TrainingError(self.unknown(name))
        return self.entries[name]


@lru_cache(maxsize=1)
def _installed() -> OptimizerRegistry:
    registry = OptimizerRegistry()
    registry.register_all(OPTIMIZERS, "graphengine")
    registry.load_entry_points()
    return registry


def default_optimizers(plugins: Sequence[str] = ()) -> OptimizerRegistry:
    """Built-in and entry-point optimizers, plus the ``OPTIMIZERS`` of each of ``plugins``.

    A plugin that exports only ``OPS`` adds nothing here (and is not an error).

    Raises
    ------
    PluginImportError, DuplicateOpError
    """
    registry = _installed().copy()
    for spec in plugins:
        registry.load_plugin(spec)
    return registry


def make_optimizer(
    name: str,
    hyper: Mapping[str, Any] | None,
    params: Mapping[str, Array],
    registry: OptimizerRegistry | None = None,
) -> Optimizer:
    """Build optimizer ``name`` with ``hyper`` for ``params``.

    Raises
    ------
    TrainingError
        Unknown name (with "did you mean") or hyper-parameters its model rejects.
    """
    cls = (registry or default_optimizers())[name]
    try:
        validated = cls.Hyper.model_validate(dict(hyper or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "?"
        msg = f"unknown hyper-parameter {key!r}" if first["type"] == "extra_forbidden" else f"{key}: {first['msg']}"
        allowed = ", ".join(cls.Hyper.model_fields) or "none"
        raise TrainingError(f"optimizer {name!r}: {msg} (hyper-parameters: {allowed})") from None
    return cls(validated, params)


def describe(opt: Optimizer) -> dict[str, Any]:
    """Name and hyper-parameters, for history files."""
    return {"name": opt.name, **opt.hyper.model_dump()}
