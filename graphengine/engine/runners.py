"""How one call of a schedule runs: which runner, and the code generated a slice per call meanwhile.

A schedule's first call builds its :class:`~graphengine.engine.table.Table`
(a flat table of pre-bound calls) and runs it with every op's output checked
against its shape rule; later calls run the table and spend a quarter of
their own time (``BUDGET``, in this thread's CPU time) writing and compiling
its straight-line code (:func:`graphengine.engine.codegen.generation`), which
runs every call once it is complete. The step interpreter
(:class:`~graphengine.engine.interpreter.Interpreter`, the reference
semantics) runs calls with ``record`` and the first call of input shapes the
run-time limits just measured. See docs/performance-calls.md.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence, cast

from ..graph.collector import collector_paused
from ..ops import TensorSpec
from . import chunks
from .binding import Binder
from .codegen import Program, generate, generation
from .interpreter import Interpreter
from .schedule import Schedule
from .table import Table

#: Schedules of up to this many steps get their code generated on the first call (a few ms at most).
SMALL_STEPS = 64
#: Each later call spends this fraction of its own time writing and compiling code, until it is complete.
BUDGET = 0.25
#: Chunks are sized to compile within that budget, but no smaller than this.
MIN_CHUNK_LINES = 50

#: The budget's clock: this thread's CPU time, so that a call preempted by other work on a busy machine
#: does not earn a larger slice of code generation.
_clock = time.thread_time

#: Runs a schedule: ``runner(values, seed, recorder) -> (outputs, gradients)``.
Runner = Callable[..., tuple[tuple[Any, ...], tuple[Any, ...]]]


class Runners:
    """Picks the runner of each call of a plan's schedules (see :meth:`runner`).

    Parameters
    ----------
    names : list of str
        Per slot, for messages.
    specs : list of TensorSpec
        Per slot.
    binder : Binder
        The plan's, for its run-time limits.

    Examples
    --------
    >>> import graphengine
    >>> plan = graphengine.load("examples/seed_network.json").compile()
    >>> schedule, _, _ = plan._grad_schedule(["W_o"], None)
    >>> runners = Runners(plan.names, plan.specs, plan._binder)
    >>> type(runners.runner(schedule, True)).__name__  # record: the reference interpreter
    'Interpreter'
    """

    def __init__(self, names: list[str], specs: list[TensorSpec], binder: Binder) -> None:
        self.names, self.specs, self.binder = names, specs, binder
        self._shapes: list[tuple[int, ...] | None] | None = None

    def runner(self, schedule: Schedule, record: bool, values: Sequence[Any] = ()) -> Runner:
        """How to run ``schedule`` this time (see docs/performance-calls.md).

        - A call whose input shapes the run-time limits measured just now runs
          on the interpreter with the specs measured at those shapes, so an op
          that makes more than its rule said is caught right after it returns.
        - Generated code, once complete (or prepared), runs every later call.
        - Otherwise the schedule's :class:`~graphengine.engine.table.Table`
          runs: built on the first call, which also checks every op's output
          against its shape rule. A schedule of up to ``SMALL_STEPS`` steps has
          its code generated on that first call too; a larger one has it
          generated a slice per call, each slice within about what the call
          itself took, so no call after the first costs much more than a steady one.
        - With ``record``, the interpreter runs, unless code was prepared for it.

        Every path checks every VJP result on every call.
        """
        if self.binder.run_limits.unverified:  # shapes measured just now: check each op against its rule at them
            fresh = self.binder.run_limits.take_fresh(values)
            if fresh is not None:
                return Interpreter(schedule, fresh, self.names)
        program = schedule.programs.get(record)
        if program is not None and record in schedule.ran:
            return program
        if record:
            return self.interpreter(schedule)
        table = schedule.table
        first = table is None
        if table is None:
            table = schedule.table = self.table(schedule)
            if schedule.size <= SMALL_STEPS:
                self.generate(schedule, False)

        def timed(*args: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
            start = _clock()
            if first:  # the checked run makes a few objects per step: keep the collector off the heap meanwhile
                with collector_paused():
                    return table(*args, check=self.specs)
            result = table(*args)
            if False not in schedule.programs:
                self.advance(schedule, BUDGET * (_clock() - start))
            return result

        return timed

    def static_shapes(self) -> list[tuple[int, ...] | None]:
        """Per slot: its shape, or None where a dimension is free (computed once)."""
        if self._shapes is None:
            self._shapes = [None if None in spec.shape else spec.shape for spec in self.specs]  # type: ignore[misc]
        return self._shapes

    def table(self, schedule: Schedule) -> Table:
        with collector_paused():  # tens of thousands of entries: the collector would walk the heap again and again
            return Table(schedule, self.names, self.static_shapes(), [spec.dtype for spec in self.specs])

    def advance(self, schedule: Schedule, budget: float) -> None:
        """Spend about ``budget`` seconds generating the schedule's code; install it when it is complete."""
        with collector_paused():
            self._advance_paused(schedule, budget)

    def _advance_paused(self, schedule: Schedule, budget: float) -> None:
        schedule.budget = budget
        if schedule.generation is None:
            shapes = self.static_shapes()

            def chunk_lines(seconds_per_line: float) -> int:  # what compiles within this call's budget
                return min(max(int(schedule.budget / seconds_per_line), MIN_CHUNK_LINES), chunks.CHUNK_LINES)

            schedule.generation = generation(
                schedule,
                names=self.names,
                shapes=shapes,  # type: ignore[arg-type]
                dtypes=[s.dtype for s in self.specs],
                chunk_lines=chunk_lines,
            )
        deadline = _clock() + budget
        while _clock() < deadline:
            try:
                next(schedule.generation)
            except StopIteration as done:
                schedule.programs[False], schedule.generation = done.value, None
                return

    def interpreter(self, schedule: Schedule) -> Interpreter:
        return Interpreter(schedule, self.specs, self.names)

    def generate(self, schedule: Schedule, record: bool) -> Program:
        program = schedule.programs.get(record)
        if program is None:
            program = schedule.programs[record] = generate(
                schedule,
                names=self.names,
                shapes=self.static_shapes(),  # type: ignore[arg-type]
                dtypes=[spec.dtype for spec in self.specs],
                record=record,
            )
        return cast(Program, program)  # the schedule caches only what generate() made
