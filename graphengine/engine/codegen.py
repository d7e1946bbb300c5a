"""The code generator: one schedule written out as straight-line Python, as torch.fx does.

The generated function does what the step interpreter
(:class:`~graphengine.engine.interpreter.Interpreter`) does, in the same
order, with the same arithmetic, so its results are bitwise equal. Each VJP
result gets a cheap inline test (class, shape and dtype identity); anything
else takes the slow path, :func:`graphengine.ops.vjp.fit_cotangent`, which
unbroadcasts it or raises naming the input.
"""

from __future__ import annotations

import re
import time
import types
from dataclasses import dataclass
from typing import Any, Callable, Generator, Sequence, Union

import numpy as np

from ..errors import ExecutionError, FeedError
from ..ops.vjp import VJPError, VJPSite, fit_cotangent, vjp_raised
from .interpreter import forward_failed
from .schedule import Schedule

# What a generated line means when it raises: ("forward", node, op), ("vjp", site),
# ("check", site) or ("seed",); None for lines that only move values.
_Info = Any


@dataclass
class Program:
    """A generated forward (+ reverse) pass; call it with the bound values, like an Interpreter.

    ``fn`` runs the pass; a long pass is several generated functions (chunks,
    see :data:`CHUNK_LINES`) that ``fn`` calls in turn. ``where`` maps each
    chunk's code object to what an exception on each of its lines means.
    """

    fn: Any
    source: str
    where: dict[types.CodeType, list[_Info]]  # per chunk: per source line, None or what a raise there means

    def __call__(
        self, values: Sequence[Any], seed: Any = None, recorder: Any = None
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        try:
            return self.fn(values, seed, recorder)  # type: ignore[no-any-return]
        except Exception as exc:
            info = self._info(exc)
            kind = info[0] if info is not None else None
            # Already explained where raised: a bad cotangent by fit_cotangent, a bad seed by seed().
            if (kind == "check" and isinstance(exc, VJPError)) or (kind == "seed" and isinstance(exc, FeedError)):
                raise
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

    def compiled(
        self, chunk_lines: ChunkLines = 0
    ) -> Generator[None, None, tuple[Any, str, dict[types.CodeType, list[_Info]]]]:
        """Compile the lines: one function, or a chain of chunks of at most ``chunk_lines`` lines.

        ``chunk_lines`` may be a function of the seconds per line the last compile() took, asked
        before each chunk. A generator: it yields after each compile() (and every few thousand
        lines of bookkeeping), so that a caller can spread the work over several calls; it
        returns what :class:`Program` takes.
        """
        size = chunk_lines if callable(chunk_lines) else (lambda rate: chunk_lines or CHUNK_LINES)
        # The checks read locals and literals, not globals: a global load is five times the bytecode,
        # and on a graph of 10,000 nodes the size of the bytecode is what the time goes with.
        prologue = ["    nd, fix = _nd, _fix"] + [f"    {name} = _{name}" for name in self.dtype_names.values()]
        fits = self.fits
        self.ns["_fix"] = lambda raw, shape, k: fit_cotangent(raw, shape, *fits[k])
        self.ns.update({f"_{name}": dtype for dtype, name in self.dtype_names.items()})
        body, where = self.lines, self.where[1:]
        if len(body) <= max(1, size(COMPILE_SECONDS_PER_LINE)):
            code, source = _compile("_program", "values, seed, recorder", prologue + body)
            return types.FunctionType(code, self.ns, "_program"), source, {code: [None] * (1 + len(prologue)) + where}
        return (yield from self._chunked(prologue, body, where, size))

    def _chunked(
        self, prologue: list[str], body: list[str], where: list[_Info], size: Callable[[float], int]
    ) -> Generator[None, None, tuple[Any, str, dict[types.CodeType, list[_Info]]]]:
        """Chunks of ``size(rate)`` lines each; each hands the locals still live on to the next in a list.

        The list is emptied on entry, so a value dies where the one long function would drop it.
        """
        last = yield from _last_mentions(body)
        shared = {k: v for k, v in self.ns.items() if k.startswith("_")}  # what every chunk reads
        chunks: list[Callable[..., Any]] = []
        sources: list[str] = []
        lines_of: dict[types.CodeType, list[_Info]] = {}
        alive: set[str] = set()
        before: list[str] = []
        start, rate = 0, COMPILE_SECONDS_PER_LINE
        while start < len(body):
            end = min(start + max(1, size(rate), len(body) // MAX_CHUNKS), len(body))
            _track(alive, body[start:end])
            after = sorted(n for n in alive if last[n] >= end) if end < len(body) else []
            head = list(prologue)
            if before:
                head += [f"    {', '.join(before)}, = live", "    live.clear()"]
            tail = [f"    return [{', '.join(after)}]"] if end < len(body) else []
            began = time.perf_counter()
            k = len(chunks)
            code, source = _compile(f"_chunk{k}", "values, seed, recorder, live", head + body[start:end] + tail)
            rate = (time.perf_counter() - began) / (end - start)
            chunks.append(types.FunctionType(code, _namespace(self.ns, shared, source), f"_chunk{k}"))
            sources.append(source)
            lines_of[code] = [None] * (1 + len(head)) + where[start:end] + [None] * len(tail)
            start, before = end, after
            yield
        if len(chunks) == 1:
            chunks.append(lambda values, seed, recorder, live: live)  # pragma: no cover - sized to one chunk
        first, middle, last_chunk = chunks[0], chunks[1:-1], chunks[-1]

        def _program(values: Any, seed: Any, recorder: Any) -> Any:
            live = first(values, seed, recorder, None)
            for chunk in middle:
                live = chunk(values, seed, recorder, live)
            return last_chunk(values, seed, recorder, live)

        return _program, "\n".join(sources), lines_of


#: Generated functions are cut into chunks of at most this many lines: CPython's compile() is
#: superlinear in the size of one function (12,000 lines cost 2.4-3.2x what 6,000 do), linear over chunks.
CHUNK_LINES = 4000
#: At most about this many chunks: each boundary hands every live local on in a list, and on a
#: random 10k-node DAG 213 chunks made the steady call 1.85x what 25 did.
MAX_CHUNKS = 32
#: A first guess of what compile() costs per generated line; later chunks use what the last one took.
COMPILE_SECONDS_PER_LINE = 10e-6

#: Lines per chunk: a number, or ``lines(seconds per line of the last compile)``.
ChunkLines = Union[int, Callable[[float], int]]

_LOCAL = re.compile(r"\b(?:[shg]\d+|c\d*)\b")  # the generated code's locals: values, shapes, cotangents, contributions


def _last_mentions(body: Sequence[str]) -> Generator[None, None, dict[str, int]]:
    """Each local's last mention, by line."""
    last: dict[str, int] = {}
    for i, line in enumerate(body):
        for name in _LOCAL.findall(line):
            last[name] = i
        if i % 2000 == 1999:
            yield
    return last


def _track(alive: set[str], lines: Sequence[str]) -> None:
    """Update the locals defined and not deleted, over ``lines``."""
    for line in lines:
        text = line.strip()
        if text.startswith("del "):
            alive.difference_update(n.strip() for n in text[4:].split(","))
        else:
            target = text.split(" ", 1)[0]
            if _LOCAL.fullmatch(target):
                alive.add(target)


def _namespace(ns: dict[str, Any], shared: dict[str, Any], source: str) -> dict[str, Any]:
    """The globals one chunk reads: a small dict per chunk keeps every global load cache-friendly."""
    own = {name: ns[name] for name in _GLOBAL.findall(source) if name in ns}
    own.update(shared)
    return own


_GLOBAL = re.compile(r"\b[fabvDS]\d+(?:_\d+)?\b")


def _compile(name: str, params: str, lines: list[str]) -> tuple[types.CodeType, str]:
    source = f"def {name}({params}):\n" + "\n".join(lines) + "\n"
    module = compile(source, "<graphengine plan>", "exec")
    # Build the function from its code object directly: no exec of a module body.
    (code,) = [c for c in module.co_consts if isinstance(c, types.CodeType)]
    return code, source


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
        Lines per compiled chunk (default ``CHUNK_LINES``), or a function of the
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
        return (s10, ), ()
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
    writer.frees, t_backward = yield from _free_points(schedule, live)
    need_shape = _runtime_shapes(schedule, live, shapes)
    yield from _emit_forward(writer, schedule, need_shape)
    grad_tuple = "()"
    if seeded:
        has_g = yield from _emit_backward(writer, schedule, live, t_backward, names, shapes, dtypes, record)
        grad_tuple = _wrt_tuple(writer, schedule.wrt, has_g, shapes, dtypes)
    writer.emit(f"return ({''.join(f's{s}, ' for s in schedule.outputs)}), {grad_tuple}")
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
        if t % 2000 == 0:
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
        if k % 2000 == 1999:
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


def _emit_forward(writer: _Writer, schedule: Schedule, need_shape: set[int]) -> Generator[None, None, None]:
    for s in schedule.bound:
        writer.emit(f"s{s} = values[{s}]")
        if s in need_shape:
            writer.emit(f"h{s} = _shape(s{s})")
    writer.free(0)
    for k, (step, _) in enumerate(schedule.forward):
        direct = getattr(step.op.forward, "__ge_direct__", None)  # a terse op's own forward: no adapter call
        if direct is not None:
            writer.ns[f"f{k}"] = direct[0]
            call = _direct_call(direct[1], step, f"a{k}", "", 0)
        else:
            writer.ns[f"f{k}"], writer.ns[f"a{k}"] = step.op.forward, step.attrs
            call = ", ".join(f"s{i}" for i in step.ins) + f", attrs=a{k}"
        writer.emit(f"s{step.out} = f{k}({call})", ("forward", step.node_id, step.op.name))
        if step.out in need_shape:
            writer.emit(f"h{step.out} = _shape(s{step.out})")
        writer.free(k + 1)
        if k % 100 == 99:
            yield


def _emit_backward(
    writer: _Writer,
    schedule: Schedule,
    live: Sequence[int],
    t_backward: int,
    names: Sequence[str],
    shapes: Sequence[tuple[int, ...] | None],
    dtypes: Sequence[np.dtype],
    record: bool,
) -> Generator[None, None, set[int]]:
    """Emit the reverse pass; return the slots that received a cotangent."""
    ns, emit = writer.ns, writer.emit
    seed_slot = schedule.grad_output
    emit(f"g{seed_slot} = seed(s{seed_slot})", ("seed",))  # seed(out) checks the output and makes its cotangent
    writer.free(t_backward - 1)
    received: dict[int, int] = {}
    for k, j in enumerate(live):
        step = schedule.backward[j]
        ns[f"b{j}"] = step.attrs
        out_arg = f"s{step.out}" if step.reads_out else "None"
        in_args = ", ".join(f"s{i}" if needed else "None" for i, needed in zip(step.ins, step.reads))
        names_c = []
        for n_grad, (position, slot, vjp) in enumerate(step.grads):
            site = VJPSite(step.op_name, position, names[slot], step.node_id)
            direct = getattr(vjp, "__ge_direct__", None)  # a terse VJP: call the user's function itself
            ns[f"v{j}_{n_grad}"] = vjp if direct is None else direct[0]
            if direct is None:
                call = f"g{step.out}, {out_arg}, {in_args}, attrs=b{j}"
            else:
                call = _direct_call(direct[1], step, f"b{j}", f"g{step.out}", position)
            static = shapes[slot]
            shape = f"h{slot}" if static is None else repr(tuple(int(d) for d in static))  # a literal
            dt = writer.dtype_local(dtypes[slot])
            writer.fits.append((dtypes[slot], site))
            c = f"c{n_grad}" if record else "c"
            names_c.append(c)
            emit(f"{c} = v{j}_{n_grad}({call})", ("vjp", site))
            # Every call, cheaply: an exact ndarray of the input's shape and dtype passes as it is, as
            # through fit_cotangent; anything else (to unbroadcast, or wrong) goes through it.
            emit(
                f"if {c}.__class__ is not nd or {c}.shape != {shape} or {c}.dtype is not {dt}: "
                f"{c} = fix({c}, {shape}, {len(writer.fits) - 1})",
                ("check", site),
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
        writer.free(t_backward + k)
        if k % 50 == 49:
            yield
    return {seed_slot, *received}


def _direct_call(arguments: Sequence[tuple[str | None, Any]], step: Any, attrs: str, g: str, position: int) -> str:
    """The arguments of a direct call (see ``graphengine.ops.terse``): what the function names, nothing else."""
    parts = []
    for keyword, what in arguments:
        if isinstance(what, int):
            expr = f"s{step.ins[what]}"
        elif isinstance(what, tuple):  # ("argnum", position)
            expr = str(position)
        else:
            expr = {"g": g, "out": f"s{step.out}", "attrs": attrs}[what]
        parts.append(expr if keyword is None else f"{keyword}={expr}")
    return ", ".join(parts)


def _wrt_tuple(
    writer: _Writer,
    wrt: Sequence[int],
    has_g: set[int],
    shapes: Sequence[tuple[int, ...] | None],
    dtypes: Sequence[np.dtype],
) -> str:
    """The gradients' tuple expression: zeros where no cotangent arrives."""
    grads = []
    for s in wrt:
        if s in has_g:
            grads.append(f"g{s}")
        else:
            writer.ns[f"D{s}"] = dtypes[s]
            if shapes[s] is not None:
                writer.ns[f"S{s}"] = tuple(shapes[s])  # type: ignore[arg-type]
            grads.append(f"_zeros({'h' if shapes[s] is None else 'S'}{s}, D{s})")
    return "(" + "".join(g + ", " for g in grads) + ")"
