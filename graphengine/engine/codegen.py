"""The code generator: one schedule written out as straight-line Python, as torch.fx does."""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import ExecutionError, FeedError
from ..ops import unbroadcast
from .schedule import BackwardStep


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

    def __call__(
        self, values: Sequence[Any], seed: Any = None, recorder: Any = None
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
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
            exc = ExecutionError(
                f"{_where(*contexts[k])}: VJP returned {contribution.dtype.name} for a {dtype.name} input"
            )
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
