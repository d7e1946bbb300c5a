"""Compiling generated lines: one function, or a chain of chunks that hand values on in a carry list.

:mod:`graphengine.engine.codegen` writes a schedule as lines of straight-line
Python; this module turns them into a callable. CPython's ``compile()`` is
superlinear in the size of one function, and a plan that generates its code a
slice per call needs pieces that each compile within a small budget, so long
programs are cut into chunks.

A local that lives across a chunk boundary travels in one shared *carry*
list, one cell per local: the chunk that last assigned it stores it there,
the next chunk that mentions it loads it and clears the cell. A value is thus
held in one place at a time, and dies where the one long function would drop
it; and a boundary costs only the locals the chunks on either side mention,
not every live one (on a 10k chain every forward value lives until the
backward pass: handing all of them on at every boundary made 200 chunks cost
2.4x one function).
"""

from __future__ import annotations

import re
import time
import types
from typing import Any, Callable, Generator, Sequence, Union

#: Chunks of a program compiled at once (``prepare()``) have at most this many lines: compile() is
#: superlinear in the size of one function (12,000 lines cost 2.4-3.2x what 6,000 do), linear over chunks.
CHUNK_LINES = 4000
#: A first guess of what a chunk costs per generated line; later chunks use what the last one took.
COMPILE_SECONDS_PER_LINE = 10e-6

#: Lines per chunk: a number, or ``lines(seconds per line of the last compile)``.
ChunkLines = Union[int, Callable[[float], int]]
#: Per compiled function: what an exception on each of its source lines means (None: nothing to say).
Where = dict[types.CodeType, list[Any]]

#: The budget's clock: this thread's CPU time, so that a compile() preempted by other work on a busy
#: machine does not look dearer per line.
_clock = time.thread_time

#: The generated code's locals: values, shapes, cotangents, saved intermediates, temporaries, contributions, and the ids
#: the gradients' ownership check tests against (``taken``, see :mod:`graphengine.engine.epilogue`).
_LOCAL = re.compile(r"\b(?:[shgrt]\d+|c\d*|taken)\b")  # t<k>: an inline expression's temporaries
_GLOBAL = re.compile(r"\b[fabvDSn]\d+(?:_\d+)?\b")  # its per-step globals: functions, attributes, shapes, dtypes, names


def compile_lines(
    ns: dict[str, Any], prologue: list[str], body: list[str], where: list[Any], chunk_lines: ChunkLines = 0
) -> Generator[None, None, tuple[Callable[..., Any], str, Where]]:
    """Compile ``prologue + body`` as ``fn(values, seed, recorder, keyed=False)``: one function, or chunks.

    Parameters
    ----------
    ns : dict
        The globals the lines read.
    prologue : list of str
        Lines every chunk starts with (loading globals into locals).
    body : list of str
        The program's lines, indented by four spaces.
    where : list
        Per body line, what an exception there means.
    chunk_lines : int or callable
        Lines per chunk (default :data:`CHUNK_LINES`), or a function of the seconds per line
        the last compile() took, asked before each chunk.

    Returns
    -------
    tuple
        ``(fn, source, where)``, as a generator's return value: it yields after each
        compile() and every few thousand lines of bookkeeping, so that a caller can
        spread the work over several calls.

    Examples
    --------
    >>> work = compile_lines({}, [], ["    s1 = values[0] + 1", "    return s1 * 2"], [None, None], 1)
    >>> while True:
    ...     try:
    ...         next(work)
    ...     except StopIteration as done:
    ...         fn, source, where = done.value
    ...         break
    >>> fn([20], None, None), len(where)  # two chunks, s1 carried from the first to the second
    (42, 2)
    """
    size = chunk_lines if callable(chunk_lines) else (lambda rate: chunk_lines or CHUNK_LINES)
    if len(body) <= max(1, size(COMPILE_SECONDS_PER_LINE)):
        code, source = _compile("_program", "values, seed, recorder, keyed=False", prologue + body)
        return types.FunctionType(code, ns, "_program", (False,)), source, {code: [None] * (1 + len(prologue)) + where}
    return (yield from _chunked(ns, prologue, body, where, size))


def _chunked(
    ns: dict[str, Any], prologue: list[str], body: list[str], where: list[Any], size: Callable[[float], int]
) -> Generator[None, None, tuple[Callable[..., Any], str, Where]]:
    """Chunks of ``size(rate)`` lines each, handing values on in the carry list (see the module docstring)."""
    last = yield from _last_mentions(body)
    cell: dict[str, int] = {}  # local -> its carry cell
    carried: set[str] = set()  # locals whose current value waits in the carry
    shared = {k: v for k, v in ns.items() if k.startswith("_")}  # what every chunk reads
    chunks: list[Callable[..., Any]] = []
    sources: list[str] = []
    lines_of: Where = {}
    start, rate = 0, COMPILE_SECONDS_PER_LINE
    while start < len(body):
        # The rate counts the whole of a chunk's step (finding its locals, compiling, its namespace), not
        # compile() alone: sized by compile() alone, every slice took about twice its budget.
        began = _clock()
        end = min(start + max(1, size(rate)), len(body))
        lines = body[start:end]
        mentioned = set(_LOCAL.findall("\n".join(lines)))
        loads = sorted(carried & mentioned)
        alive = _alive_after(lines, set(loads))
        stores = sorted(n for n in alive if last[n] >= end) if end < len(body) else []
        carried = (carried - mentioned) | set(stores)
        for name in stores:
            cell.setdefault(name, len(cell))
        head = list(prologue)
        if loads:
            head.append(f"    {', '.join(loads)}, = {', '.join(f'carry[{cell[n]}]' for n in loads)},")
            head.append(f"    {' = '.join(f'carry[{cell[n]}]' for n in loads)} = None")
        tail = [f"    {', '.join(f'carry[{cell[n]}]' for n in stores)}, = {', '.join(stores)},"] if stores else []
        k = len(chunks)
        code, source = _compile(f"_chunk{k}", "values, seed, recorder, carry, keyed=False", head + lines + tail)
        chunks.append(types.FunctionType(code, _namespace(ns, shared, source), f"_chunk{k}", (False,)))
        rate = (_clock() - began) / (end - start)
        sources.append(source)
        lines_of[code] = [None] * (1 + len(head)) + where[start:end] + [None] * len(tail)
        start = end
        yield
    *middle, last_chunk = chunks
    n_cells = len(cell)

    def _program(values: Any, seed: Any, recorder: Any, keyed: bool = False) -> Any:
        carry = [None] * n_cells
        for chunk in middle:
            chunk(values, seed, recorder, carry)
        return last_chunk(values, seed, recorder, carry, keyed)

    return _program, "\n".join(sources), lines_of


def _last_mentions(body: Sequence[str]) -> Generator[None, None, dict[str, int]]:
    """Each local's last mention, by line."""
    last: dict[str, int] = {}
    for i, line in enumerate(body):
        for name in _LOCAL.findall(line):
            last[name] = i
        if i % 100 == 99:  # ~0.07 ms of regex work per slice
            yield
    return last


def _alive_after(lines: Sequence[str], alive: set[str]) -> set[str]:
    """The locals assigned (or loaded: ``alive``) and not deleted by the end of ``lines``."""
    for line in lines:
        text = line.strip()
        if text.startswith("del "):
            alive.difference_update(n.strip() for n in text[4:].split(","))
        elif text.startswith("if "):  # the VJP result check: `if c... : c = fix(...)` reassigns c, already alive
            continue
        else:  # `s9 = ...`, `g5 += c`, or two targets: `s9, r9 = ...` (a forward that saves for its VJPs)
            targets = text.split(" = ", 1)[0] if " = " in text else text.split(" ", 1)[0]
            alive.update(t for t in (t.strip() for t in targets.split(",")) if _LOCAL.fullmatch(t))
    return alive


def _namespace(ns: dict[str, Any], shared: dict[str, Any], source: str) -> dict[str, Any]:
    """The globals one chunk reads: a small dict per chunk keeps every global load cache-friendly."""
    own = {name: ns[name] for name in _GLOBAL.findall(source) if name in ns}
    own.update(shared)
    return own


def _compile(name: str, params: str, lines: list[str]) -> tuple[types.CodeType, str]:
    source = f"def {name}({params}):\n" + "\n".join(lines) + "\n"
    module = compile(source, "<graphengine plan>", "exec")
    # Build the function from its code object directly: no exec of a module body (so the caller passes
    # the defaults: a code object does not hold them).
    (code,) = [c for c in module.co_consts if isinstance(c, types.CodeType)]
    return code, source
