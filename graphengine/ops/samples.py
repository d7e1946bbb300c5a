"""Generated samples for elementwise ops: the domains of their values and every broadcasting case.

:func:`graphengine.ops.terse.defop` gives an op without a ``shape_rule`` these
samples (``domain`` chooses their values); a long-form :class:`OpDef` may use
:func:`elementwise_samples` directly.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np

from ..errors import PluginError, did_you_mean
from .opdef import Sample

__all__ = ["elementwise_samples", "DOMAINS", "Domain", "DomainFn", "SamplesFn"]

#: ``domain(rng, shape) -> ndarray``: the values of one input in generated samples.
DomainFn = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]
Domain = Union[str, DomainFn]
SamplesFn = Callable[[np.random.Generator], list[Sample]]


def _real(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.asarray(rng.standard_normal(shape))


def _positive(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.asarray(rng.uniform(0.5, 2.0, size=shape))


def _nonzero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.asarray(rng.uniform(0.3, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape))


#: Named domains of sample values: ``"real"`` (standard normal), ``"positive"``
#: (in [0.5, 2), for log, sqrt, a divisor's ...), ``"nonzero"`` (in ±[0.3, 2),
#: away from a kink at 0).
DOMAINS: dict[str, DomainFn] = {"real": _real, "positive": _positive, "nonzero": _nonzero}


def _shape_cases(n: int) -> list[tuple[tuple[int, ...], ...]]:
    """Input shapes for ``n`` elementwise inputs: equal shapes, then broadcasting of every kind."""
    if n == 1:
        return [((3,),), ((2, 3),), ((),)]
    rest = n - 1
    cases = [
        ((3,),) * n,
        ((2, 3),) * n,
        ((2, 1),) + ((1, 3),) * rest,  # outer broadcast
        ((2, 3),) + ((3,),) * rest,  # row vector
        ((3,),) * rest + ((2, 3),),  # row vector first
        ((4, 2, 3),) + ((2, 3),) * rest,  # leading batch dimension
        ((),) + ((3,),) * rest,  # scalar
    ]
    return cases


def elementwise_samples(*domains: Domain, attrs: Sequence[Mapping[str, Any]] = ({},)) -> SamplesFn:
    """Samples for an elementwise op: one domain per input, every broadcasting case, each attribute set.

    Parameters
    ----------
    *domains : str or callable
        One per input: a name in :data:`DOMAINS` or ``domain(rng, shape) -> ndarray``.
    attrs : sequence of mapping
        Attribute sets; every input case is checked with each.

    Returns
    -------
    callable
        ``samples(rng) -> list[Sample]``, as :class:`OpDef` takes it.

    Raises
    ------
    PluginError
        When a domain is neither a known name nor callable.

    Examples
    --------
    >>> import numpy as np
    >>> samples = elementwise_samples("real", "nonzero")
    >>> [tuple(np.shape(x) for x in inputs) for inputs, _ in samples(np.random.default_rng(0))][:3]
    [((3,), (3,)), ((2, 3), (2, 3)), ((2, 1), (1, 3))]
    >>> bool(np.all(np.abs(samples(np.random.default_rng(0))[0][0][1]) >= 0.3))
    True
    """
    if not domains:
        raise PluginError("elementwise_samples needs one domain per input")
    fns = [_domain_fn(d) for d in domains]
    attr_sets = [dict(a) for a in attrs]
    cases = _shape_cases(len(fns))

    def samples(rng: np.random.Generator) -> list[Sample]:
        return [
            ([fn(rng, shape) for fn, shape in zip(fns, shapes)], dict(attr_set))
            for attr_set, shapes in itertools.product(attr_sets, cases)
        ]

    return samples


def _domain_fn(domain: Domain) -> DomainFn:
    if callable(domain):
        return domain
    if isinstance(domain, str) and domain in DOMAINS:
        return DOMAINS[domain]
    raise PluginError(
        f"unknown sample domain {domain!r}{did_you_mean(str(domain), DOMAINS)}; "
        f"use one of {sorted(DOMAINS)} or a function (rng, shape) -> array"
    )


def default_samples(
    inputs: tuple[str, ...],
    variadic: bool,
    domain: Domain | Mapping[str, Domain] | None,
    sample_attrs: Sequence[Mapping[str, Any]] | None,
    fail: Callable[[str], PluginError],
) -> SamplesFn:
    """The samples of a terse elementwise op: ``domain`` (one, or by input name; default ``"real"``) per input."""
    names = [*inputs, inputs[-1]] if variadic else list(inputs)  # a variadic input repeats once
    if isinstance(domain, Mapping):
        unknown = [k for k in domain if k not in inputs]
        if unknown:
            raise fail(f"domain names {unknown[0]!r}, which is not an input{did_you_mean(unknown[0], inputs)}")
        domains: list[Domain] = [domain.get(n, "real") for n in names]
    else:
        domains = [domain or "real"] * len(names)
    try:
        return elementwise_samples(*domains, attrs=sample_attrs if sample_attrs is not None else ({},))
    except PluginError as exc:
        raise fail(str(exc)) from None
