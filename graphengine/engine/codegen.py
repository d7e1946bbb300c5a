"""The code generator: one schedule written out as straight-line Python, as torch.fx does.

The generated function does what the step interpreter
(:class:`~graphengine.engine.interpreter.Interpreter`) does, in the same
order, with the same arithmetic, so its results are bitwise equal. Each VJP
result gets a cheap inline test (class, shape and dtype identity); anything
else takes the slow path, :func:`graphengine.ops.vjp.fit_cotangent`, which
unbroadcasts it or raises naming the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator, NoReturn, Sequence

import numpy as np

from ..errors import ExecutionError, FeedError
from ..ops.vjp import VJPError, VJPSite, fit_cotangent, vjp_raised
from .backward import direct_call, emit_backward, saving_slots
from .chunks import ChunkLines, Where, compile_lines
from .epilogue import emit_return, owned_gradients
from .inline import Facts, bound_check, bound_to_verify, emit_expr
from .interpreter import forward_failed
from .schedule import Schedule

# What a generated line means when it raises: ("forward", node, op), ("vjp", site),
# ("check", site) or ("seed",); None for lines that only move values.
_Info = Any


@dataclass
class Program:
    """A generated forward (+ reverse) pass; call it with the bound values, like an Interpreter.

    ``fn`` runs the pass; a long pass is several generated functions (chunks,
    see :mod:`graphengine.engine.chunks`) that ``fn`` calls in turn. ``where`` maps each
    chunk's code object to what an exception on each of its lines means.
    """

    fn: Any
    source: str
    where: Where  # per chunk: per source line, None or what a raise there means

    def __call__(self, values: Sequence[Any], seed: Any = None, recorder: Any = None, keyed: bool = False) -> Any:
        """``(outputs, gradients)`` as tuples, or with ``keyed`` as the dicts of a GradResult, by name.

        Every gradient is the caller's own (see :func:`graphengine.engine.epilogue.owned_gradients`).
        """
        try:
            return self.fn(values, seed, recorder, keyed)
        except Exception as exc:
            self.reraise(exc)

    def reraise(self, exc: Exception) -> NoReturn:
        """Raise what ``exc``, raised by ``fn``, means: the error naming the node, or ``exc`` if it already does.

        For callers that call ``fn`` themselves (the steady call of a plan: one Python frame fewer).
        """
        info = self._info(exc)
        kind = info[0] if info is not None else None
        # Already explained where raised: a bad cotangent by fit_cotangent, a bad seed by seed().
        if (
            (kind == "check" and isinstance(exc, VJPError))
            or (kind == "seed" and isinstance(exc, FeedError))
            or (kind == "bound" and isinstance(exc, ExecutionError))
        ):
            raise exc
        raise _explain(info, exc) from exc

    def _info(self, exc: BaseException) -> _Info:
        """What the generated line that raised ``exc`` means (the last frame of ours in the traceback)."""
        where, line = None, None
        tb = exc.__traceback__
        while tb is not None:
            lines = self.where.get(tb.tb_frame.f_code)
            if lines is not None:
                where, line = lines, tb.tb_lineno
            tb = tb.tb_next
        return where[line - 1] if where is not None and line is not None and 0 < line <= len(where) else None


def _explain(info: _Info, exc: BaseException) -> Exception:
    if info is not None and info[0] == "forward":
        return forward_failed(info[1], info[2], exc)
    if info is not None and info[0] in ("vjp", "check"):
        return vjp_raised(info[1], exc)
    return ExecutionError(f"graph execution failed: {type(exc).__name__}: {exc}")


class _Writer:
    """The source being written: its lines, what each means, and the names it uses."""

    def __init__(self) -> None:
        self.ns: dict[str, Any] = {"_nd": np.ndarray, "_shape": np.shape, "_zeros": np.zeros}
        self.lines: list[str] = []
        self.where: list[_Info] = [None]  # the def line
        self.frees: dict[int, list[int]] = {}
        self.fits: list[tuple[np.dtype, VJPSite]] = []  # per checked contribution: its input's dtype, its site
        self.dtype_names: dict[np.dtype, str] = {}  # one local per dtype, for the checks
        self.facts = Facts()  # what is known of the values (see graphengine.engine.inline)
        self.bound_check: Any = None  # (known, check) for the bound values an expression relies on

    def dtype_local(self, dtype: np.dtype) -> str:
        name = self.dtype_names.get(dtype)
        if name is None:
            name = self.dtype_names[dtype] = f"dt{len(self.dtype_names)}"
        return name

    def emit(self, text: str, info: _Info = None) -> None:
        self.lines.append("    " + text)
        self.where.append(info)

    def free(self, when: int) -> None:
        """Delete the values whose last reader ran at time ``when``."""
        dead = self.frees.get(when)
        if dead:
            self.emit("del " + ", ".join(f"s{s}" for s in sorted(dead)))

    def compiled(self, chunk_lines: ChunkLines = 0) -> Generator[None, None, tuple[Any, str, Where]]:
        """Compile the lines (see :func:`graphengine.engine.chunks.compile_lines`, a generator)."""
        # The checks read locals and literals, not globals: a global load is five times the bytecode,
        # and on a graph of 10,000 nodes the size of the bytecode is what the time goes with.
        prologue = ["    nd, fix = _nd, _fix"] + [f"    {name} = _{name}" for name in self.dtype_names.values()]
        fits = self.fits
        self.ns["_fix"] = lambda raw, shape, k: fit_cotangent(raw, shape, *fits[k])
        self.ns.update({f"_{name}": dtype for dtype, name in self.dtype_names.items()})
        if self.bound_check is not None:
            self.ns["_known"], self.ns["_bound"] = self.bound_check
        return (yield from compile_lines(self.ns, prologue, self.lines, self.where[1:], chunk_lines))


def generate(
    schedule: Schedule,
    *,
    names: Sequence[str],
    shapes: Sequence[tuple[int, ...] | None],
    dtypes: Sequence[np.dtype],
    record: bool = False,
    chunk_lines: ChunkLines = 0,
) -> Program:
    """Write a schedule's forward pass, and its reverse pass if it has one, as one Python function.

    Parameters
    ----------
    schedule : Schedule
    names : sequence of str
        Slot names (for messages only; never put into the source).
    shapes : sequence of tuple or None
        Static shape per slot, or None where a dimension is free (read at run time).
    dtypes : sequence of numpy.dtype
    record : bool
        Call ``recorder(step_index, g, contributions)`` after each backward step.
    chunk_lines : int or callable
        Lines per compiled chunk (default :data:`graphengine.engine.chunks.CHUNK_LINES`), or a function of the
        seconds per line the last chunk's compile() took.

    Returns
    -------
    Program

    See Also
    --------
    generation : the same work as a generator, to spread over several calls.

    Examples
    --------
    >>> import graphengine
    >>> plan = graphengine.load("examples/seed_network.json").compile()
    >>> schedule = plan._schedule(("loss",), None, None)
    >>> shapes = [spec.shape for spec in plan.specs]
    >>> program = generate(schedule, names=plan.names, shapes=shapes, dtypes=[s.dtype for s in plan.specs])
    >>> print(program.source.splitlines()[-1])
        return ({n0: s10}, {}) if keyed else ((s10, ), ())
    """
    work = generation(schedule, names=names, shapes=shapes, dtypes=dtypes, record=record, chunk_lines=chunk_lines)
    while True:
        try:
            next(work)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def generation(
    schedule: Schedule,
    *,
    names: Sequence[str],
    shapes: Sequence[tuple[int, ...] | None],
    dtypes: Sequence[np.dtype],
    record: bool = False,
    chunk_lines: ChunkLines = 0,
) -> Generator[None, None, Program]:
    """:func:`generate` as a generator: it yields every few steps written and after each chunk compiled.

    Its return value (``StopIteration.value``) is the :class:`Program`; a plan
    advances it a little on each call, within a time budget (see
    :meth:`graphengine.engine.plan.Plan.value_and_grad`).
    """
    seeded = schedule.grad_output >= 0
    live = schedule.live
    writer = _Writer()
    # The steps between two yields are small (a few hundredths of a ms at 1k nodes, these first passes
    # a fifth of one): a slice runs steps while its budget lasts, so a long step is what a call overshoots by.
    writer.frees, t_backward = yield from _free_points(schedule, live)
    need_shape = _runtime_shapes(schedule, live, shapes)
    verify = bound_to_verify(schedule, shapes, live)
    if verify:
        writer.bound_check = bound_check(names, shapes, dtypes)
    saving = saving_slots(schedule)
    yield from _emit_forward(writer, schedule, need_shape, verify, shapes, dtypes, saving)
    grads: list[str] = []
    if seeded:
        has_g = yield from emit_backward(writer, schedule, live, t_backward, names, shapes, dtypes, record, saving)
        grads = owned_gradients(writer, schedule, has_g, shapes, dtypes, writer.facts.fresh)
    emit_return(writer, schedule, names, grads)
    fn, source, where = yield from writer.compiled(chunk_lines)
    return Program(fn, source, where)


def _free_points(schedule: Schedule, live: Sequence[int]) -> Generator[None, None, tuple[dict[int, list[int]], int]]:
    """When each value dies, over the forward and the backward pass together.

    Time 0 is binding, time k the k-th forward step, ``t_backward - 1`` the
    seed and ``t_backward + k`` the k-th live backward step. Returns
    ``{time: slots whose last reader runs then}`` (outputs never die) and
    ``t_backward``.
    """
    last: dict[int, int] = {}
    t = 0
    for s in schedule.bound:
        last[s] = t
    for step, _ in schedule.forward:
        t += 1
        for i in step.ins:
            last[i] = t
        last[step.out] = t
        if t % 250 == 0:
            yield
    t_backward = t + 2
    seed_slot = schedule.grad_output
    if seed_slot >= 0:
        last[seed_slot] = max(last.get(seed_slot, 0), t_backward - 1)
    for k, j in enumerate(live):
        back = schedule.backward[j]
        for i, needed in zip(back.ins, back.reads):
            if needed:
                last[i] = t_backward + k
        if back.reads_out:
            last[back.out] = t_backward + k
        if k % 250 == 249:
            yield
    keep = set(schedule.outputs)
    frees: dict[int, list[int]] = {}
    for s, when in last.items():
        if s not in keep:
            frees.setdefault(when, []).append(s)
    return frees, t_backward


def _runtime_shapes(schedule: Schedule, live: Sequence[int], shapes: Sequence[tuple[int, ...] | None]) -> set[int]:
    """Slots whose shape must be read at run time: free-dimension slots that get a cotangent or are wrt."""
    receivers = {slot for j in live for _, slot, _ in schedule.backward[j].grads}
    return {s for s in receivers | set(schedule.wrt) if shapes[s] is None}


def _emit_forward(
    writer: _Writer,
    schedule: Schedule,
    need_shape: set[int],
    verify: Sequence[int],
    shapes: Sequence[tuple[int, ...] | None],
    dtypes: Sequence[np.dtype],
    saving: set[int],
) -> Generator[None, None, None]:
    certain = writer.facts.certain
    checked = set(verify)
    for s in schedule.bound:
        writer.emit(f"s{s} = values[{s}]")
        if s in checked:  # an expression relies on it: verified whenever it is another object than last call's
            writer.emit(f"if s{s} is not _known[{s}]: _bound(s{s}, {s})", ("bound",))
            certain.add(s)
        if s in need_shape:
            writer.emit(f"h{s} = _shape(s{s})")
    writer.free(0)
    for k, (step, _) in enumerate(schedule.forward):
        direct = getattr(step.op.forward, "__ge_direct__", None)  # a terse op's own forward: no adapter call
        target = f"s{step.out}"
        expr = step.op.forward_expr
        call: str | None
        if expr is not None and step.out not in saving:  # written out as ufunc calls (graphengine.engine.inline)
            leaves = {n: (f"s{i}", shapes[i], dtypes[i], i in certain) for n, i in zip(step.op.inputs, step.ins)}
            result = emit_expr(writer, writer.facts, expr, leaves, target, ("forward", step.node_id, step.op.name))
            if result.fits(shapes[step.out], dtypes[step.out]):
                certain.add(step.out)
            call = None
        elif step.out in saving:  # its VJPs run later in this pass: keep what they may reuse, in r<slot>
            writer.ns[f"f{k}"], writer.ns[f"a{k}"] = step.op.forward_saving, step.attrs
            call = ", ".join(f"s{i}" for i in step.ins) + f", attrs=a{k}"
            target += f", r{step.out}"
        elif direct is not None:
            writer.ns[f"f{k}"] = direct[0]
            call = direct_call(direct[1], step, f"a{k}", "", 0)
        else:
            writer.ns[f"f{k}"], writer.ns[f"a{k}"] = step.op.forward, step.attrs
            call = ", ".join(f"s{i}" for i in step.ins) + f", attrs=a{k}"
        if call is not None:
            writer.emit(f"{target} = f{k}({call})", ("forward", step.node_id, step.op.name))
        if step.out in need_shape:
            writer.emit(f"h{step.out} = _shape(s{step.out})")
        writer.free(k + 1)
        if k % 10 == 9:
            yield
