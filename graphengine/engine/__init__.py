"""The engine: compiled plans, schedules, the interpreter, the code generator, the trace, gradcheck.

A :class:`Plan` turns a :class:`~graphengine.graph.Graph` into flat steps over
integer slots; ``run`` and ``grad`` never touch networkx or pydantic objects.

Layer: above :mod:`graphengine.graph`; imports it and the layers below.
"""

from .. import hooks
from .gradcheck import check_op, check_op_samples, gradcheck
from .plan import Plan
from .results import GradResult
from .schedule import CODEGEN_MAX_STEPS
from .trace import FanIn, Trace, TraceStep

__all__ = [
    "Plan",
    "GradResult",
    "Trace",
    "TraceStep",
    "FanIn",
    "check_op",
    "check_op_samples",
    "gradcheck",
    "CODEGEN_MAX_STEPS",
]

hooks.set_compiler(Plan)
