"""Compiled execution plans.

A :class:`Plan` turns a :class:`~graphengine.graph.Graph` into a flat list of
steps over integer *slots* (one per named value). ``run`` and ``grad`` never
touch networkx or pydantic objects.

Each distinct request (which outputs, which ``wrt``) gets a *schedule*
(:mod:`graphengine.engine.schedule`), computed once and cached. Its first call
builds its :class:`~graphengine.engine.table.Table` (a flat table of pre-bound
calls) and runs it with every op's output checked against its shape rule;
later calls run the table, or, once it is complete, generated straight-line
Python (:func:`graphengine.engine.codegen.generate`), which is written and
compiled a slice per call, each within about what the call itself took. All
of them compute the bits of the step interpreter
(:class:`~graphengine.engine.interpreter.Interpreter`, the reference
semantics), which runs calls with ``record`` and the first call of new input
shapes under run-time limits. See docs/performance-calls.md.
"""

from __future__ import annotations

import operator
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import FeedError
from ..graph import Graph
from ..graph.collector import collector_paused
from ..graph.graph import NodeMap
from ..ops import TensorSpec
from .binding import Binder, check_names, default_seed, seed_cotangent
from .codegen import Program
from .interpreter import Interpreter
from .interpreter import forward as _run_forward
from .results import GradResult
from .runners import Runner, Runners
from .schedule import Schedule, Step, build_schedule
from .trace import Recorder, Trace

#: A NodeInfo's (id, op, inputs, attrs), taken in C.
_WIRING = operator.itemgetter(0, 1, 2, 3)


class Plan:
    """A graph compiled for repeated ``run`` and ``grad`` calls.

    Each distinct request (outputs, ``wrt``, output to differentiate) is
    compiled once into straight-line Python code (see
    :func:`graphengine.engine.codegen.generate`) and cached; later calls only
    bind the feeds and call it.

    Parameters
    ----------
    graph : Graph
    dtype : numpy.dtype, optional
        Run every float value in this dtype instead of the declared ones
        (``gradcheck`` uses float64).

    Examples
    --------
    >>> import graphengine
    >>> plan = graphengine.load("examples/seed_network.json").compile()
    >>> grads = plan.grad(wrt=["W_o"])
    >>> grads["W_o"].round(6).tolist()
    [[0.082167, 0.082668], [-0.022603, -0.02274]]
    """

    def __init__(self, graph: "Graph", dtype: np.dtype | None = None) -> None:
        # Tens of thousands of long-lived tuples: the collector would walk them again and again.
        with collector_paused():
            self._build(graph, dtype)

    def _build(self, graph: "Graph", dtype: np.dtype | None) -> None:
        self.graph = graph
        self.dtype = None if dtype is None else np.dtype(dtype)
        nodes = graph.nodes
        sources = [*graph.inputs, *graph.parameters, *graph.constants]
        self.names: list[str] = [*sources, *nodes]
        slot = self.slot = dict(zip(self.names, range(len(self.names))))
        specs = [*map(graph.spec, sources)]
        new = partial(tuple.__new__, Step)  # a named tuple's own __new__ is Python code, paid once per step
        if isinstance(nodes, NodeMap):  # a loaded graph: read its columns, make no NodeInfo
            columns, node_specs = nodes.wiring()
            specs += node_specs
            self.steps: list[Step] = [*map(new, zip(*columns))]
        else:
            specs += [node.spec for node in nodes.values()]
            at = slot.__getitem__  # map() over a bound method: no comprehension frame per node
            self.steps = [
                new((node_id, op, attrs, tuple(map(at, inputs)), at(node_id), inputs))
                for node_id, op, inputs, attrs in map(_WIRING, nodes.values())
            ]
        self.specs = specs if self.dtype is None else [*map(self._cast_spec, specs)]
        self._binder = Binder(graph, self.slot, self.specs, self.dtype)
        self._runners = Runners(self.names, self.specs, self._binder)
        self._schedules: dict[Any, Schedule] = {}
        self._grad_requests: dict[Any, tuple[Schedule, str]] = {}

    def _cast_spec(self, spec: TensorSpec) -> TensorSpec:
        if self.dtype is not None and spec.dtype.kind == "f":
            return TensorSpec(spec.shape, self.dtype)
        return spec

    def with_dtype(self, dtype: np.dtype) -> "Plan":
        """The same graph, with every float value in ``dtype``."""
        return Plan(self.graph, dtype)

    # --- public entry points -----------------------------------------------------------------

    def run(
        self, feeds: Mapping[str, Any] | None = None, *, outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run forward; return the requested outputs (default: the graph's).

        Parameters
        ----------
        feeds : mapping of str to array_like, optional
            Values of inputs (inputs with defaults may be left out). Parameters
            and constants may be overridden by name.
        outputs : sequence of str, optional
            Any value names; default: the graph's outputs.

        Raises
        ------
        FeedError
            For an unknown name, a missing input, or a wrong shape or dtype.
        ExecutionError
            When an op fails; names the node.
        """
        names = tuple(outputs) if outputs is not None else tuple(self.graph.outputs)
        schedule = self._schedule(names, None, None)
        values = self._bind(feeds, schedule)
        outs, _ = self._runner(schedule, False, values)(values)
        schedule.ran.add(False)
        return dict(zip(names, outs))

    def run_all(self, feeds: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Run forward and return every named value (for inspection and diagrams)."""
        return self.run(feeds, outputs=self.names)

    def grad(
        self,
        feeds: Mapping[str, Any] | None = None,
        wrt: Sequence[str] | None = None,
        *,
        output: str | None = None,
        cotangent: Any = None,
    ) -> dict[str, np.ndarray]:
        """Gradients of ``output`` with respect to each ``wrt`` name.

        Returns a new dict on every call; nothing is kept between calls.
        See :meth:`value_and_grad` for the parameters.
        """
        return self.value_and_grad(feeds, wrt, output=output, cotangent=cotangent).gradients

    def prepare(self, wrt: Sequence[str] | None = None, *, output: str | None = None, record: bool = False) -> None:
        """Build the schedule and generate the code of a ``grad`` request now.

        The first call still runs on the fully checked interpreter; from the
        second call on, the code is ready instead of being generated then,
        whatever the size of the graph.

        Parameters
        ----------
        wrt, output, record
            As :meth:`value_and_grad`.

        Raises
        ------
        FeedError
            For an unknown name.
        """
        schedule, _, _ = self._grad_schedule(wrt, output)
        self._generate(schedule, record)

    def value_and_grad(
        self,
        feeds: Mapping[str, Any] | None = None,
        wrt: Sequence[str] | None = None,
        *,
        output: str | None = None,
        cotangent: Any = None,
        record: bool = False,
    ) -> GradResult:
        """Run forward, then reverse mode from ``output``.

        Parameters
        ----------
        feeds : mapping, optional
            As :meth:`run`.
        wrt : sequence of str, optional
            Names to differentiate with respect to (parameters, inputs, or any
            node); default: every parameter.
        output : str, optional
            The value to differentiate; default: the graph's ``loss``.
        cotangent : array_like, optional
            The output's cotangent, needed when the output is not a scalar.
        record : bool
            Also return a :class:`Trace` of the pass, for diagrams.

        Returns
        -------
        GradResult

        Raises
        ------
        FeedError
            Bad feeds or names, a non-scalar output without ``cotangent``, or a
            cotangent of the wrong shape.
        ExecutionError
            An op or VJP failed or returned a wrong shape or dtype; names the node.
        """
        if not record:  # a request seen before: bind once, and run its generated code with no frame between
            key = wrt if wrt.__class__ is tuple else tuple(wrt) if wrt is not None else tuple(self.graph.parameters)
            hit = self._grad_requests.get((key, output))  # the key _grad_schedule makes
            if hit is not None:
                schedule, resolved = hit
                values = self._binder.bind(feeds, schedule.required)
                program: Program | None = schedule.programs.get(False)  # type: ignore[assignment]  # only Programs
                # What Runners.runner would pick: the steady call. The generated code makes the gradients
                # the caller's own and keys both dicts itself.
                if program is not None and False in schedule.ran and not self._binder.run_limits.unverified:
                    seed = default_seed(resolved) if cotangent is None else _seed(cotangent, resolved, None)
                    try:
                        outputs, gradients = program.fn(values, seed, None, True)
                    except Exception as exc:
                        program.reraise(exc)
                    return GradResult(outputs, gradients, None, self, feeds)
                return self._value_and_grad(feeds, wrt, output, cotangent, record, interpret=False, values=values)
        return self._value_and_grad(feeds, wrt, output, cotangent, record, interpret=False)

    # --- internals ---------------------------------------------------------------------------

    def _value_and_grad(
        self,
        feeds: Mapping[str, Any] | None,
        wrt: Sequence[str] | None,
        output: str | None,
        cotangent: Any,
        record: bool,
        *,
        interpret: bool,
        values: list[Any] | None = None,
    ) -> GradResult:
        """Every call but a seen request's steady one (see value_and_grad); ``values`` if already bound."""
        schedule, wrt_names, resolved = self._grad_schedule(wrt, output)
        if values is None:
            values = self._binder.bind(feeds, schedule.required)
        taken = {id(values[s]) for s in schedule.bound}  # user data and parameters: never returned as gradients
        runner = self._interpreter(schedule) if interpret else self._runner(schedule, record, values)
        trace = Trace(resolved, np.empty(0)) if record else None
        recorder = Recorder(schedule.backward, self.names, trace) if trace is not None else None
        outs, grads = runner(values, _seed(cotangent, resolved, trace), recorder)
        if not interpret:
            schedule.ran.add(record)
        return GradResult(
            {self.names[s]: value for s, value in zip(schedule.outputs, outs)},
            self._fresh(wrt_names, schedule.wrt, grads, taken),
            recorder.finish() if recorder is not None else None,
            self,
            feeds,
        )

    def _fresh(
        self, names: Sequence[str], slots: Sequence[int], grads: Sequence[Any], taken: set[int]
    ) -> dict[str, np.ndarray]:
        """The gradients as arrays the caller owns: never a view, user data, a parameter or one array twice.

        The generated code's steady call does the same itself (``epilogue.owned_gradients``).
        """
        gradients = {}
        for name, slot, g in zip(names, slots, grads):
            if g.__class__ is not np.ndarray or g.base is not None or id(g) in taken or not g.flags.writeable:
                g = np.array(g, dtype=self.specs[slot].dtype)
            taken.add(id(g))
            gradients[name] = g
        return gradients

    def _grad_schedule(self, wrt: Sequence[str] | None, output: str | None) -> tuple[Schedule, tuple[str, ...], str]:
        wrt_names = tuple(wrt) if wrt is not None else tuple(self.graph.parameters)
        hit = self._grad_requests.get((wrt_names, output))  # names were checked when the entry was made
        if hit is not None:
            return hit[0], wrt_names, hit[1]
        resolved = self._grad_output(output)
        check_names(wrt_names, self.slot, "wrt")
        # The differentiated value is returned too, even when the file does not list it as an output.
        outputs = tuple(self.graph.outputs) + (() if resolved in self.graph.outputs else (resolved,))
        schedule = self._schedule(outputs, wrt_names, resolved)
        self._grad_requests[(wrt_names, output)] = (schedule, resolved)
        return schedule, wrt_names, resolved

    def _grad_output(self, output: str | None) -> str:
        if output is None:
            if self.graph.loss is None:
                raise FeedError(
                    f"the graph has several outputs {self.graph.outputs} and no 'loss'; say which to differentiate (output=...)"
                )
            return self.graph.loss
        check_names([output], self.slot, "output")
        return output

    def _schedule(self, outputs: tuple[str, ...], wrt: tuple[str, ...] | None, grad_output: str | None) -> Schedule:
        key = (outputs, wrt, grad_output)
        schedule = self._schedules.get(key)
        if schedule is None:
            check_names(outputs, self.slot, "outputs")
            slot = self.slot
            with collector_paused():
                schedule = self._schedules[key] = build_schedule(
                    self.steps,
                    self.specs,
                    self._binder.n_sources,
                    tuple(slot[o] for o in outputs),
                    None if wrt is None else tuple(slot[w] for w in wrt),
                    None if grad_output is None else slot[grad_output],
                )
        return schedule

    def _runner(self, schedule: Schedule, record: bool, values: Sequence[Any] = ()) -> Runner:
        """How to run ``schedule`` this time: see :meth:`graphengine.engine.runners.Runners.runner`."""
        return self._runners.runner(schedule, record, values)

    def _interpreter(self, schedule: Schedule) -> Interpreter:
        return self._runners.interpreter(schedule)

    def _generate(self, schedule: Schedule, record: bool) -> Program:
        return self._runners.generate(schedule, record)

    # Thin wrappers, kept for tests that drive one stage by hand.

    def _bind(self, feeds: Mapping[str, Any] | None, schedule: Schedule) -> list[Any]:
        return self._binder.bind(feeds, schedule.required)

    def _forward(self, schedule: Schedule, values: list[Any], shapes: list[Any] | None) -> None:
        _run_forward(schedule.forward, values, self.specs, shapes)


def _seed(cotangent: Any, output: str, trace: Trace | None) -> Callable[[Any], np.ndarray]:
    """``seed(out)``, called by a runner once the output is known: its cotangent, kept in ``trace`` if any."""

    def seed(out: Any) -> np.ndarray:
        value = seed_cotangent(out, cotangent, output)
        if trace is not None:
            trace.seed = value
        return value

    return seed


def _interpreted(
    plan: Plan,
    feeds: Mapping[str, Any] | None = None,
    wrt: Sequence[str] | None = None,
    *,
    output: str | None = None,
    cotangent: Any = None,
    record: bool = False,
) -> GradResult:
    """``plan.value_and_grad`` on the step interpreter, whatever the call count: the reference, for tests."""
    return plan._value_and_grad(feeds, wrt, output, cotangent, record, interpret=True)
