"""Compiled execution plans.

A :class:`Plan` turns a :class:`~graphengine.graph.Graph` into a flat list of
steps over integer *slots* (one per named value). ``run`` and ``grad`` never
touch networkx or pydantic objects.

Each distinct request (which outputs, which ``wrt``) gets a *schedule*,
computed once and cached: the forward steps it needs, the backward steps on a
path from a ``wrt`` name to the output, and after which step each forward
value can be dropped because no later forward step or VJP reads it. The
schedule is then written out as straight-line Python
(:func:`graphengine.backward.generate`); schedules of more than
``CODEGEN_MAX_STEPS`` steps run on the step interpreter
(:func:`graphengine.backward.backward`) instead, where generating code would
cost more than it saves.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ExecutionError, FeedError, did_you_mean
from ..graph import Graph
from ..ops import TensorSpec, format_shape
from .codegen import ForwardStep, Program, generate
from .interpreter import backward, check_forward_output
from .results import GradResult
from .schedule import CODEGEN_MAX_STEPS, BackwardStep, Step, _Schedule
from .trace import Recorder, Trace


def _read_only_one(dtype: str) -> np.ndarray:
    one = np.ones((), dtype=dtype)
    one.flags.writeable = False
    return one


#: The cotangent of a scalar output, one per float dtype, shared by every call.
_ONE = {np.dtype(name): _read_only_one(name) for name in ("float32", "float64")}


class Plan:
    """A graph compiled for repeated ``run`` and ``grad`` calls.

    Each distinct request (outputs, ``wrt``, output to differentiate) is
    compiled once into straight-line Python code (see
    :func:`graphengine.backward.generate`) and cached; later calls only bind
    the feeds and call it.

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
        self.graph = graph
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.names: list[str] = [*graph.inputs, *graph.parameters, *graph.constants, *graph.nodes]
        self.slot = {name: i for i, name in enumerate(self.names)}
        self.specs = [self._cast_spec(graph.spec(name)) for name in self.names]
        self.steps: list[Step] = [
            Step(n.id, n.op, n.attrs, tuple(self.slot[i] for i in n.inputs), self.slot[n.id], n.inputs)
            for n in graph.nodes.values()
        ]
        self._producer = {step.out: k for k, step in enumerate(self.steps)}
        self._schedules: dict[Any, _Schedule] = {}
        self._grad_requests: dict[Any, tuple[_Schedule, str]] = {}
        slot = self.slot
        self._input_slots = [(slot[name], name, info) for name, info in graph.inputs.items()]
        self._param_slots = [(slot[name], name) for name in graph.parameters]
        self._const_slots = [(slot[name], name) for name in graph.constants]
        self._n_sources = len(graph.inputs) + len(graph.parameters) + len(graph.constants)
        # Inputs with named dimensions: (slot, input name, ((axis, dimension name), ...)). Usually none.
        self._named_dims = [
            (slot[name], name, tuple((axis, d) for axis, d in enumerate(info.dims) if isinstance(d, str)))
            for name, info in graph.inputs.items()
            if any(isinstance(d, str) for d in info.dims)
        ]

    def _cast_spec(self, spec: TensorSpec) -> TensorSpec:
        if self.dtype is not None and spec.dtype.kind == "f":
            return TensorSpec(spec.shape, self.dtype)
        return spec

    def with_dtype(self, dtype: np.dtype) -> "Plan":
        """The same graph, with every float value in ``dtype``."""
        return Plan(self.graph, dtype)

    def parameter_values(self) -> dict[str, np.ndarray]:
        """Current parameter values (in this plan's dtype)."""
        return {name: self._cast(value) for name, value in self.graph.parameters.items()}

    def _cast(self, value: np.ndarray) -> np.ndarray:
        if self.dtype is not None and value.dtype.kind == "f" and value.dtype != self.dtype:
            return value.astype(self.dtype)
        return value

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
        program = self._program(schedule, False)
        if program is None:
            self._forward(schedule, values, None)
            schedule.verified.add(False)
            return {name: values[self.slot[name]] for name in names}
        outs, _ = program(values)
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
        second call on, the code is ready instead of being generated then.

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
        if len(schedule.forward) + len(schedule.backward) <= CODEGEN_MAX_STEPS:
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
        schedule, wrt_names, output = self._grad_schedule(wrt, output)
        values = self._bind(feeds, schedule)
        bound_ids = {id(values[s]) for s in schedule.bound}
        program = self._program(schedule, record)
        if program is None:
            result = self._value_and_grad_interpreted(
                schedule, values, wrt_names, output, cotangent, record, feeds, bound_ids
            )
            schedule.verified.add(record)
            return result

        trace = Trace(output, np.empty(0)) if record else None
        recorder = Recorder(schedule.backward, self.names, trace) if trace is not None else None

        def seed(out: Any) -> np.ndarray:  # called by the program once the output is known
            value = self._seed(out, cotangent, output)
            if trace is not None:
                trace.seed = value
            return value

        outs, grads = program(values, seed, recorder)
        outputs = {self.names[s]: value for s, value in zip(schedule.outputs, outs)}
        gradients = self._fresh(wrt_names, schedule.wrt, grads, bound_ids)
        return GradResult(
            outputs, gradients, recorder.finish() if recorder is not None else None, plan=self, feeds=feeds
        )

    def _fresh(
        self, names: Sequence[str], slots: Sequence[int], grads: Sequence[Any], taken: set[int]
    ) -> dict[str, np.ndarray]:
        """The gradients as arrays the caller owns: never a view, user data, a parameter or one array twice."""
        gradients = {}
        for name, slot, g in zip(names, slots, grads):
            if g.__class__ is not np.ndarray or g.base is not None or id(g) in taken or not g.flags.writeable:
                g = np.array(g, dtype=self.specs[slot].dtype)
            taken.add(id(g))
            gradients[name] = g
        return gradients

    # --- internals ---------------------------------------------------------------------------

    def _grad_schedule(self, wrt: Sequence[str] | None, output: str | None) -> tuple[_Schedule, tuple[str, ...], str]:
        wrt_names = tuple(wrt) if wrt is not None else tuple(self.graph.parameters)
        hit = self._grad_requests.get((wrt_names, output))  # names were checked when the entry was made
        if hit is not None:
            return hit[0], wrt_names, hit[1]
        resolved = self._grad_output(output)
        self._check_names(wrt_names, "wrt")
        # The differentiated value is returned too, even when the file does not list it as an output.
        outputs = tuple(self.graph.outputs) + (() if resolved in self.graph.outputs else (resolved,))
        schedule = self._schedule(outputs, wrt_names, resolved)
        self._grad_requests[(wrt_names, output)] = (schedule, resolved)
        return schedule, wrt_names, resolved

    def _program(self, schedule: _Schedule, record: bool) -> Program | None:
        """The generated code of ``schedule``, or None to use the step interpreter.

        A request's first call runs on the interpreter, which checks every op's
        output against its shape rule and every VJP result, and generates no
        code (one call would not repay the compile). Later calls run generated
        code that keeps only the checks broadcasting or free dimensions need.
        Schedules over ``CODEGEN_MAX_STEPS`` steps always use the interpreter.
        """
        if record not in schedule.verified:
            return None
        program = schedule.programs.get(record)
        if program is None and len(schedule.forward) + len(schedule.backward) <= CODEGEN_MAX_STEPS:
            program = self._generate(schedule, record)
        return program

    def _generate(self, schedule: _Schedule, record: bool) -> Program:
        program = schedule.programs.get(record)
        if program is None:
            specs = self.specs
            program = schedule.programs[record] = generate(
                names=self.names,
                bound=schedule.bound,
                forward=[
                    ForwardStep(s.node_id, s.op.name, s.op.forward, s.attrs, s.ins, s.out) for s, _ in schedule.forward
                ],
                outputs=schedule.outputs,
                seed_slot=schedule.grad_output if schedule.grad_output >= 0 else None,
                steps=schedule.backward,
                wrt=schedule.wrt,
                shapes=[None if any(d is None for d in spec.shape) else spec.shape for spec in specs],  # type: ignore[misc]
                dtypes=[spec.dtype for spec in specs],
                verified=True,
                record=record,
            )
        return program

    def _value_and_grad_interpreted(
        self,
        schedule: _Schedule,
        values: list[Any],
        wrt_names: tuple[str, ...],
        output: str,
        cotangent: Any,
        record: bool,
        feeds: Mapping[str, Any] | None,
        bound_ids: set[int],
    ) -> GradResult:
        """The step-by-step path: first calls, and schedules too large to generate code for."""
        shapes: list[Any] = [None] * len(values)
        self._forward(schedule, values, shapes)
        outputs = {self.names[s]: values[s] for s in schedule.outputs}
        out_slot = self.slot[output]
        seed = self._seed(values[out_slot], cotangent, output)
        recorder = Recorder(schedule.backward, self.names, Trace(output, seed)) if record else None
        dtypes = [spec.dtype for spec in self.specs]
        cotangents = backward(schedule.backward, values, shapes, dtypes, self.names, out_slot, seed, recorder)
        grads = []
        for slot in schedule.wrt:
            g = cotangents[slot]
            if g is None:  # not on any path to the output
                g = np.zeros(shapes[slot], dtype=self.specs[slot].dtype)
            grads.append(g)
        return GradResult(
            outputs,
            self._fresh(wrt_names, schedule.wrt, grads, bound_ids),
            recorder.finish() if recorder is not None else None,
            plan=self,
            feeds=feeds,
        )

    def _grad_output(self, output: str | None) -> str:
        if output is None:
            if self.graph.loss is None:
                raise FeedError(
                    f"the graph has several outputs {self.graph.outputs} and no 'loss'; say which to differentiate (output=...)"
                )
            return self.graph.loss
        self._check_names([output], "output")
        return output

    def _check_names(self, names: Sequence[str], what: str) -> None:
        for name in names:
            if name not in self.slot:
                hint = did_you_mean(name, self.names)
                raise FeedError(f"{what}: no value named {name!r} in the graph{hint}")

    def _seed(self, out: Any, cotangent: Any, output: str) -> np.ndarray:
        out = np.asarray(out)
        if cotangent is None:
            if out.size != 1:
                raise FeedError(
                    f"output {output!r} has shape {out.shape}, not a scalar; pass a cotangent of that shape (cotangent=... in Python, --cotangent on the command line)"
                )
            if out.shape == ():
                one = _ONE.get(out.dtype)  # read-only, so it is copied if it ever comes back as a gradient
                if one is not None:
                    return one
            return np.ones(out.shape, dtype=out.dtype)
        seed = np.array(cotangent, dtype=out.dtype)  # a copy: it may come back as a gradient
        if seed.shape != out.shape:
            raise FeedError(f"cotangent has shape {seed.shape} but output {output!r} has shape {out.shape}")
        return seed

    def _bind(self, feeds: Mapping[str, Any] | None, schedule: _Schedule) -> list[Any]:
        values: list[Any] = [None] * len(self.names)
        graph = self.graph
        if feeds:
            for name, value in feeds.items():
                slot = self.slot.get(name)
                if slot is None or slot >= self._n_sources:
                    self._check_names([name] if slot is None else [], "feed")
                    raise FeedError(f"feed: {name!r} is computed by the graph and cannot be fed")
                values[slot] = self._coerce(name, value, self.specs[slot])
        required = schedule.required
        for slot, name, info in self._input_slots:
            if values[slot] is None and slot in required:
                if info.default is None:
                    raise FeedError(f"input {name!r} ({self.specs[slot]}) needs a value: feed it or give it a default")
                values[slot] = self._cast(info.default)
        if self._named_dims:
            self._bind_dimension_names(values)
        for slots, table in ((self._param_slots, graph.parameters), (self._const_slots, graph.constants)):
            if self.dtype is None:
                for slot, name in slots:
                    if values[slot] is None:
                        values[slot] = table[name]
            else:
                for slot, name in slots:
                    if values[slot] is None:
                        values[slot] = self._cast(table[name])
        return values

    def _bind_dimension_names(self, values: list[Any]) -> None:
        """Every use of a dimension name within one call binds one size; a second size is a FeedError."""
        bound: dict[str, tuple[int, str, int]] = {}  # dimension name -> (size, input, axis) that bound it
        for slot, name, axes in self._named_dims:
            value = values[slot]
            if value is None:  # not needed by this request
                continue
            for axis, dim in axes:
                size = value.shape[axis]
                first = bound.setdefault(dim, (size, name, axis))
                if first[0] != size:
                    raise FeedError(
                        f"dimension {dim!r} is {first[0]} in input {first[1]!r} (axis {first[2]}) "
                        f"but {size} in input {name!r} (axis {axis}); every use of {dim!r} must have one size in a call"
                    )

    def _coerce(self, name: str, value: Any, spec: TensorSpec) -> np.ndarray:
        try:
            array = np.asarray(value)
        except Exception as exc:
            raise FeedError(f"feed {name!r}: not an array: {exc}") from None
        if array.dtype.kind not in "fiub" or (spec.dtype.kind in "iu" and array.dtype.kind == "f"):
            raise FeedError(f"feed {name!r}: got {array.dtype.name} values for a {spec.dtype.name} input")
        array = array.astype(spec.dtype, copy=False)
        shape = array.shape
        if len(shape) != len(spec.shape) or any(d is not None and d != s for s, d in zip(shape, spec.shape)):
            raise FeedError(
                f"feed {name!r}: shape {format_shape(shape)} does not match the declared {format_shape(spec.shape)}"
            )
        return array

    def _forward(self, schedule: _Schedule, values: list[Any], shapes: list[Any] | None) -> None:
        if shapes is not None:
            for slot, value in enumerate(values):
                if value is not None:
                    shapes[slot] = value.shape
        for step, drop in schedule.forward:
            try:
                out = step.op.forward(*[values[i] for i in step.ins], attrs=step.attrs)
            except Exception as exc:
                raise ExecutionError(
                    f"node {step.node_id!r} (op {step.op.name!r}) failed: {type(exc).__name__}: {exc}"
                ) from exc
            check_forward_output(out, self.specs[step.out], step.node_id, step.op.name)
            values[step.out] = out
            if shapes is not None:
                shapes[step.out] = np.shape(out)
            for slot in drop:
                values[slot] = None

    def _schedule(self, outputs: tuple[str, ...], wrt: tuple[str, ...] | None, grad_output: str | None) -> _Schedule:
        key = (outputs, wrt, grad_output)
        schedule = self._schedules.get(key)
        if schedule is None:
            self._check_names(outputs, "outputs")
            schedule = self._schedules[key] = self._build_schedule(outputs, wrt, grad_output)
        return schedule

    def _build_schedule(
        self, outputs: tuple[str, ...], wrt: tuple[str, ...] | None, grad_output: str | None
    ) -> _Schedule:
        n = len(self.names)
        steps = self.steps
        out_slots = [self.slot[o] for o in outputs]
        # Ancestors of everything we must compute, by one reverse sweep over the topological order.
        needed = [False] * n
        wrt_slots = [self.slot[w] for w in wrt] if wrt is not None else []
        for s in out_slots + ([self.slot[grad_output]] if grad_output else []) + wrt_slots:
            needed[s] = True
        for step in reversed(steps):
            if needed[step.out]:
                for i in step.ins:
                    needed[i] = True
        forward_steps = [step for step in steps if needed[step.out]]

        backward_steps: list[BackwardStep] = []
        kept_for_backward: set[int] = set()
        if grad_output is not None and wrt is not None:
            backward_steps, kept_for_backward = self._backward_steps(wrt, grad_output)

        # Drop each forward value after its last forward reader, unless a VJP or the caller needs it.
        keep = set(out_slots) | kept_for_backward
        last_reader: dict[int, int] = {}
        for k, step in enumerate(forward_steps):
            for i in step.ins:
                last_reader[i] = k
        drops: list[list[int]] = [[] for _ in forward_steps]
        for slot, k in last_reader.items():
            if slot not in keep and slot in self._producer:
                drops[k].append(slot)
        return _Schedule(
            tuple((step, tuple(d)) for step, d in zip(forward_steps, drops)),
            tuple(out_slots),
            tuple(backward_steps),
            self.slot[grad_output] if grad_output else -1,
            tuple(wrt_slots),
            tuple(s for s in range(self._n_sources) if needed[s]),
            frozenset(s for s in range(self._n_sources) if needed[s]),
        )

    def _backward_steps(self, wrt: tuple[str, ...], output: str) -> tuple[list[BackwardStep], set[int]]:
        n = len(self.names)
        wrt_slots = {self.slot[w] for w in wrt}
        # A slot needs a cotangent if it depends on a wrt value and the output depends on it.
        depends_on_wrt = [False] * n
        for s in wrt_slots:
            depends_on_wrt[s] = True
        for step in self.steps:
            if any(depends_on_wrt[i] for i in step.ins):
                depends_on_wrt[step.out] = True
        reaches_output = [False] * n
        reaches_output[self.slot[output]] = True
        for step in reversed(self.steps):
            if reaches_output[step.out]:
                for i in step.ins:
                    reaches_output[i] = True
        active = [step for step in reversed(self.steps) if depends_on_wrt[step.out] and reaches_output[step.out]]
        prepared = []
        kept: set[int] = set()
        for step in active:
            op = step.op
            grads = []
            for position, slot in enumerate(step.ins):
                vjp = op.vjp_for(position)
                if vjp is None or not depends_on_wrt[slot] or self.specs[slot].dtype.kind != "f":
                    continue
                if op.variadic and position >= len(op.inputs) - 1:
                    vjp = functools.partial(vjp, argnum=position)
                grads.append((position, slot, vjp))
            reads = [i for p, i in enumerate(step.ins) if op.needs_input(p)]
            if op.needs_output():
                reads.append(step.out)
            prepared.append((step, grads, reads))
            kept.update(reads)
        # Release each forward value after the last backward step that reads it.
        backward_steps = []
        last_use: dict[int, int] = {}
        for k, (_, _, reads) in enumerate(prepared):
            for slot in reads:
                last_use[slot] = k
        release_at: list[list[int]] = [[] for _ in prepared]
        for slot, k in last_use.items():
            if slot in self._producer:
                release_at[k].append(slot)
        for k, (step, grads, _) in enumerate(prepared):
            backward_steps.append(
                BackwardStep(
                    step.node_id,
                    step.op.name,
                    step.attrs,
                    step.out,
                    step.ins,
                    tuple(grads),
                    step.out in wrt_slots,
                    tuple(release_at[k]),
                    tuple(step.op.needs_input(p) for p in range(len(step.ins))),
                    step.op.needs_output(),
                )
            )
        return backward_steps, kept
