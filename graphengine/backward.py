"""The reverse-mode pass, and the trace it can record.

The pass walks a compiled schedule backwards. For each step it *pops* the
cotangent of the step's output, asks each differentiable input's VJP for a
contribution, reduces it to the input's shape (:func:`unbroadcast`, the only
place that happens) and *adds* it into that input's cotangent. Adding is what
makes fan-out right: a value read by several nodes receives one contribution
per reader, and its gradient is their sum.

Nothing here knows about particular ops; everything comes from the step.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .errors import ExecutionError, FeedError
from .ops import format_shape, unbroadcast

__all__ = ["BackwardStep", "Trace", "TraceStep", "FanIn", "backward", "ForwardStep", "Program", "generate", "Recorder"]


@dataclass(frozen=True)
class BackwardStep:
    """One node's share of the reverse pass, fixed when the plan is compiled."""

    node_id: str
    op_name: str
    attrs: Any
    out: int  # slot of the node's output
    ins: tuple[int, ...]  # slots of all its inputs, in order
    grads: tuple[tuple[int, int, Any], ...]  # (position, input slot, vjp) for inputs that need a gradient
    keep_cotangent: bool  # the output is itself asked for (in wrt)
    release: tuple[int, ...]  # forward slots no later step reads
    reads: tuple[bool, ...] = ()  # per input: does any VJP read its value (else None is passed)
    reads_out: bool = True  # does any VJP read the forward output


@dataclass
class TraceStep:
    """What one node received and what it sent to each input."""

    node: str
    op: str
    cotangent: np.ndarray
    contributions: list[tuple[str, int, np.ndarray]]  # (input name, position, contribution)


@dataclass
class FanIn:
    """Contributions that met at one value, and their sum (its gradient)."""

    name: str
    contributions: list[tuple[str, np.ndarray]]  # (from node, contribution)
    total: np.ndarray


@dataclass
class Trace:
    """A recorded backward pass: plain data, see :meth:`to_json`."""

    output: str
    seed: np.ndarray
    steps: list[TraceStep] = field(default_factory=list)
    fan_in: dict[str, FanIn] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The trace as JSON-ready dicts and nested lists."""
        return {
            "output": self.output,
            "seed": self.seed.tolist(),
            "steps": [
                {
                    "node": s.node,
                    "op": s.op,
                    "cotangent": np.asarray(s.cotangent).tolist(),
                    "contributions": [
                        {"to": name, "position": pos, "value": np.asarray(c).tolist()}
                        for name, pos, c in s.contributions
                    ],
                }
                for s in self.steps
            ],
            "fan_in": {
                name: {
                    "contributions": [{"from": src, "value": np.asarray(c).tolist()} for src, c in f.contributions],
                    "total": np.asarray(f.total).tolist(),
                }
                for name, f in self.fan_in.items()
            },
        }


def backward(
    steps: Sequence[BackwardStep],
    values: list[Any],
    shapes: Sequence[Any],
    dtypes: Sequence[np.dtype],
    names: Sequence[str],
    seed_slot: int,
    seed: np.ndarray,
    recorder: "Recorder | None" = None,
) -> list[Any]:
    """Run the reverse pass; return the cotangent of every slot (None where none).

    ``values`` holds the forward values and is emptied as the pass goes, so
    memory falls as fast as it can. ``shapes`` holds each slot's run-time shape.
    ``recorder`` is told each step's cotangent and contributions, as the
    generated code tells it.
    """
    cotangents: list[Any] = [None] * len(values)
    owned = [False] * len(values)  # True once a cotangent is an array we allocated, safe to add into in place
    cotangents[seed_slot] = seed
    for j, step in enumerate(steps):
        g = cotangents[step.out]
        if not step.keep_cotangent:
            cotangents[step.out] = None  # read pops: the cotangent is consumed here
        if g is not None:
            out = values[step.out]
            args = [values[i] for i in step.ins]
            sent = []
            for position, slot, vjp in step.grads:
                contribution = _contribution(step, position, slot, vjp, g, out, args, shapes[slot], dtypes[slot], names)
                sent.append(contribution)
                previous = cotangents[slot]
                if previous is None:
                    cotangents[slot] = contribution
                elif owned[slot]:
                    np.add(previous, contribution, out=previous)
                else:
                    total = np.add(previous, contribution)
                    cotangents[slot] = total
                    owned[slot] = isinstance(total, np.ndarray)
            if recorder is not None:
                recorder(j, g, tuple(sent))
        for slot in step.release:
            values[slot] = None
    return cotangents


def _contribution(
    step: BackwardStep,
    position: int,
    slot: int,
    vjp: Any,
    g: np.ndarray,
    out: Any,
    args: list[Any],
    shape: tuple[int, ...],
    dtype: np.dtype,
    names: Sequence[str],
) -> np.ndarray:
    where = f"node {step.node_id!r} (op {step.op_name!r}), input {position} ({names[slot]!r})"
    try:
        raw = vjp(g, out, *args, attrs=step.attrs)
    except Exception as exc:
        raise ExecutionError(f"{where}: VJP raised {type(exc).__name__}: {exc}") from exc
    contribution = np.asarray(raw)
    try:
        contribution = unbroadcast(contribution, shape)
    except ValueError:
        raise ExecutionError(
            f"{where}: VJP returned shape {contribution.shape}, which does not reduce to the input's shape {shape}"
        ) from None
    if contribution.dtype != dtype:
        raise ExecutionError(f"{where}: VJP returned {contribution.dtype.name} for a {dtype.name} input")
    return contribution


# --- straight-line code for one schedule ------------------------------------------------------
#
# For a fixed schedule the whole forward and reverse pass is known when the plan is
# compiled, so it is written out as one Python function (as torch.fx does) instead
# of being interpreted step by step. The generated source contains only generated
# identifiers (s12, g12, f3, v3_1, ...) and numbers; every op function, attribute
# model, shape and dtype is passed in through the function's namespace, never as
# text, so nothing from a graph file ever reaches the source.
#
# - Values and cotangents are locals; ``del`` frees each one right after its last
#   reader, so memory falls as early as it can.
# - Contributions are checked by one cheap test (ndarray, exact shape, same dtype);
#   only a contribution that fails it goes through :func:`unbroadcast` or raises.
# - The first contribution to a value is taken as is, the second is added into a
#   new array, and later ones are added in place into that array, which nothing
#   else references.
# - An exception is mapped back to its step through the line it was raised on.


@dataclass(frozen=True)
class ForwardStep:
    """One node of the forward pass, as the code generator needs it."""

    node_id: str
    op_name: str
    forward: Any
    attrs: Any
    ins: tuple[int, ...]
    out: int


@dataclass
class Program:
    """A generated forward (+ reverse) pass; call :meth:`__call__` with the bound values."""

    fn: Any
    source: str
    where: list[Any]  # per source line: None, or what an exception on that line means
    names: Sequence[str]

    def __call__(self, values: Sequence[Any], seed: Any = None, recorder: Any = None) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        try:
            return self.fn(values, seed, recorder)  # type: ignore[no-any-return]
        except FeedError:
            raise
        except ExecutionError as exc:
            if getattr(exc, "_checked", False):
                raise
            raise self._explain(exc) from exc
        except Exception as exc:
            raise self._explain(exc) from exc

    def _explain(self, exc: BaseException) -> ExecutionError:
        line = None
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code is self.fn.__code__:
                line = tb.tb_lineno
            tb = tb.tb_next
        info = self.where[line - 1] if line is not None and 0 < line <= len(self.where) else None
        detail = f"{type(exc).__name__}: {exc}"
        if info is None:
            return ExecutionError(f"graph execution failed: {detail}")
        if info[0] == "forward":
            return ExecutionError(f"node {info[1]!r} (op {info[2]!r}) failed: {detail}")
        where = _where(info[1], info[2], info[3], self.names[info[4]])
        if info[0] == "check":
            return ExecutionError(f"{where}: VJP returned a value that is not a numpy array ({detail})")
        return ExecutionError(f"{where}: VJP raised {detail}")


def check_forward_output(value: Any, spec: Any, node_id: str, op_name: str) -> None:
    """Raise, naming the node, when ``value`` breaks the op's shape rule (``spec``)."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    fits = (
        shape is not None
        and dtype == spec.dtype
        and len(shape) == len(spec.shape)
        and all(d is None or d == n for n, d in zip(shape, spec.shape))
    )
    if not fits:
        promised = f"{spec.dtype.name} {format_shape(spec.shape)}"
        where = f"node {node_id!r} (op {op_name!r})"
        if shape is None:
            raise ExecutionError(f"{where} did not return a numpy array (got a {type(value).__name__}); its shape rule promised {promised}")
        raise ExecutionError(f"{where} returned {dtype} {format_shape(shape)}, but its shape rule promised {promised}")


def _where(node_id: str, op_name: str, position: int, input_name: str) -> str:
    return f"node {node_id!r} (op {op_name!r}), input {position} ({input_name!r})"


def _checker(contexts: list[tuple[str, str, int, str]]) -> Any:
    """The slow path of a contribution: coerce, unbroadcast, check dtype, or raise naming the step."""

    def fix(raw: Any, k: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        contribution = np.asarray(raw)
        try:
            contribution = unbroadcast(contribution, shape)
        except ValueError:
            exc = ExecutionError(
                f"{_where(*contexts[k])}: VJP returned shape {contribution.shape}, "
                f"which does not reduce to the input's shape {shape}"
            )
            exc._checked = True  # type: ignore[attr-defined]
            raise exc from None
        if contribution.dtype != dtype:
            exc = ExecutionError(f"{_where(*contexts[k])}: VJP returned {contribution.dtype.name} for a {dtype.name} input")
            exc._checked = True  # type: ignore[attr-defined]
            raise exc
        return contribution

    return fix


def generate(
    *,
    names: Sequence[str],
    bound: Sequence[int],
    forward: Sequence[ForwardStep],
    outputs: Sequence[int],
    seed_slot: int | None,
    steps: Sequence[BackwardStep],
    wrt: Sequence[int],
    shapes: Sequence[tuple[int, ...] | None],
    dtypes: Sequence[np.dtype],
    verified: bool = False,
    record: bool = False,
) -> Program:
    """Write the forward pass, and the reverse pass from ``seed_slot``, as one Python function.

    Parameters
    ----------
    names : sequence of str
        Slot names (for messages only; never put into the source).
    bound : sequence of int
        Slots read from the ``values`` argument (inputs, parameters, constants).
    forward : sequence of ForwardStep
        In execution order.
    outputs : sequence of int
        Slots returned as the first tuple.
    seed_slot : int or None
        The differentiated value; ``seed(value)`` returns its cotangent. None: forward only.
    steps : sequence of BackwardStep
        In reverse order; only steps whose output receives a cotangent are run.
    wrt : sequence of int
        Slots whose cotangents are returned as the second tuple (zeros where none arrives).
    shapes : sequence of tuple or None
        Static shape per slot, or None where a dimension is free (read at run time).
    dtypes : sequence of numpy.dtype
    verified : bool
        The same request already ran once with every check (on the step
        interpreter, which also checks each op's output against its shape
        rule). Then contributions to inputs whose static shape equals the
        node's output shape go unchecked: there is nothing to unbroadcast, and
        their shape and dtype were verified. Contributions that may need
        unbroadcasting, or whose shape is only known at run time, are always
        checked.
    record : bool
        Call ``recorder(step_index, g, contributions)`` after each backward step.

    Returns
    -------
    Program
    """
    ns: dict[str, Any] = {"_nd": np.ndarray, "_shape": np.shape, "_zeros": np.zeros}
    lines: list[str] = []
    where: list[Any] = []

    def emit(text: str, info: Any = None) -> None:
        lines.append("    " + text)
        where.append(info)

    # Which steps run backward: those whose output receives a cotangent.
    has_g: set[int] = set() if seed_slot is None else {seed_slot}
    live: list[int] = []
    for j, step in enumerate(steps):
        if step.out in has_g:
            live.append(j)
            has_g.update(slot for _, slot, _ in step.grads)
    # How many contributions each slot receives, to emit assign / add / add-in-place.
    expected: dict[int, int] = {}
    for j in live:
        for _, slot, _ in steps[j].grads:
            expected[slot] = expected.get(slot, 0) + 1
    # Shapes needed at run time: free-dimension slots that receive a cotangent or are wrt.
    need_shape = {s for s in list(expected) + list(wrt) if shapes[s] is None}

    # Last reader of every value, over the forward and the backward pass together.
    keep = set(outputs)
    last: dict[int, int] = {}
    t = 0
    for s in bound:
        last[s] = t
    for fs in forward:
        t += 1
        for i in fs.ins:
            last[i] = t
        last[fs.out] = t
    t_backward = t + 2
    if seed_slot is not None:
        last[seed_slot] = max(last.get(seed_slot, 0), t_backward - 1)
    for k, j in enumerate(live):
        step = steps[j]
        for i, needed in zip(step.ins, step.reads):
            if needed:
                last[i] = t_backward + k
        if step.reads_out:
            last[step.out] = t_backward + k
    frees: dict[int, list[int]] = {}
    for s, when in last.items():
        if s not in keep:
            frees.setdefault(when, []).append(s)

    def free(when: int) -> None:
        dead = frees.get(when)
        if dead:
            emit("del " + ", ".join(f"s{s}" for s in sorted(dead)))

    for s in bound:
        emit(f"s{s} = values[{s}]")
        if s in need_shape:
            emit(f"h{s} = _shape(s{s})")
    free(0)
    for k, fs in enumerate(forward):
        ns[f"f{k}"], ns[f"a{k}"] = fs.forward, fs.attrs
        args = ", ".join(f"s{i}" for i in fs.ins)
        emit(f"s{fs.out} = f{k}({args}, attrs=a{k})", ("forward", fs.node_id, fs.op_name))
        if fs.out in need_shape:
            emit(f"h{fs.out} = _shape(s{fs.out})")
        free(k + 1)

    contexts: list[tuple[str, str, int, str]] = []
    if seed_slot is not None:
        ns["_fix"] = _checker(contexts)
        emit(f"g{seed_slot} = seed(s{seed_slot})")  # seed(out) checks the output and makes its cotangent
        free(t_backward - 1)
        received: dict[int, int] = {}
        for k, j in enumerate(live):
            step = steps[j]
            ns[f"b{j}"] = step.attrs
            out_arg = f"s{step.out}" if step.reads_out else "None"
            in_args = ", ".join(f"s{i}" if needed else "None" for i, needed in zip(step.ins, step.reads))
            names_c = []
            for n_grad, (position, slot, vjp) in enumerate(step.grads):
                ns[f"v{j}_{n_grad}"] = vjp
                ns[f"D{slot}"] = dtypes[slot]
                shape = f"h{slot}" if shapes[slot] is None else f"S{slot}"
                if shapes[slot] is not None:
                    ns[f"S{slot}"] = tuple(shapes[slot])  # type: ignore[arg-type]
                c = f"c{n_grad}" if record else "c"
                names_c.append(c)
                contexts.append((step.node_id, step.op_name, position, names[slot]))
                emit(
                    f"{c} = v{j}_{n_grad}(g{step.out}, {out_arg}, {in_args}, attrs=b{j})",
                    ("vjp", step.node_id, step.op_name, position, slot),
                )
                # After a checked first call, a contribution whose input has the output's static
                # shape needs no test: no broadcasting to undo, and its shape and dtype were verified.
                if not (verified and shapes[slot] is not None and shapes[slot] == shapes[step.out]):
                    emit(  # numpy scalars pass as they are; anything without .shape fails here, named
                        f"if {c}.shape != {shape} or {c}.dtype is not D{slot}: {c} = _fix({c}, {len(contexts) - 1}, {shape}, D{slot})",
                        ("check", step.node_id, step.op_name, position, slot),
                    )
                n = received[slot] = received.get(slot, 0) + 1
                if n == 1:
                    emit(f"g{slot} = {c}")
                elif n == 2:
                    emit(f"g{slot} = g{slot} + {c}")  # a new array: ours to add into from now on
                else:
                    emit(f"g{slot} += {c}")
                if n > 1 and not record:
                    emit(f"del {c}")
            if record:
                emit(f"recorder({j}, g{step.out}, ({''.join(c + ', ' for c in names_c)}))")
                if names_c:
                    emit(f"del {', '.join(names_c)}")
            if not step.keep_cotangent:
                emit(f"del g{step.out}")
            free(t_backward + k)
        grads = []
        for s in wrt:
            if s in has_g:
                grads.append(f"g{s}")
            else:
                ns[f"D{s}"] = dtypes[s]
                if shapes[s] is not None:
                    ns[f"S{s}"] = tuple(shapes[s])  # type: ignore[arg-type]
                grads.append(f"_zeros({'h' if shapes[s] is None else 'S'}{s}, D{s})")
        grad_tuple = "(" + "".join(g + ", " for g in grads) + ")"
    else:
        grad_tuple = "()"
    emit(f"return ({''.join(f's{s}, ' for s in outputs)}), {grad_tuple}")
    source = "def _program(values, seed, recorder):\n" + "\n".join(lines) + "\n"
    where.insert(0, None)  # the def line
    module = compile(source, "<graphengine plan>", "exec")
    # Build the function from its code object directly: no exec of a module body.
    (code,) = [c for c in module.co_consts if isinstance(c, types.CodeType)]
    return Program(types.FunctionType(code, ns, "_program"), source, where, names)


class Recorder:
    """Builds a :class:`Trace` from ``recorder(j, g, contributions)`` calls, made by the
    generated code and by the step interpreter alike."""

    def __init__(self, steps: Sequence[BackwardStep], names: Sequence[str], trace: Trace) -> None:
        self.steps, self.names, self.trace = steps, names, trace
        self.received: dict[int, list[tuple[str, np.ndarray]]] = {}

    def __call__(self, j: int, g: np.ndarray, contributions: tuple[np.ndarray, ...]) -> None:
        step = self.steps[j]
        sent = []
        for (position, slot, _), c in zip(step.grads, contributions):
            sent.append((self.names[slot], position, c))
            self.received.setdefault(slot, []).append((step.node_id, c))
        self.trace.steps.append(TraceStep(step.node_id, step.op_name, g, sent))

    def finish(self) -> Trace:
        """Add the fan-in records (values that received more than one contribution)."""
        for slot, parts in self.received.items():
            if len(parts) > 1:
                name = self.names[slot]
                self.trace.fan_in[name] = FanIn(name, parts, sum(p for _, p in parts[1:]) + parts[0][1])
        return self.trace
