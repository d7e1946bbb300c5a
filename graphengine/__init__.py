"""graphengine: a computation-graph engine that makes backpropagation transparent.

Load a network from a JSON file, run it, and get the gradient of its loss with
respect to every parameter::

    >>> import graphengine
    >>> g = graphengine.load("examples/seed_network.json")
    >>> result = g.value_and_grad()
    >>> round(float(result.outputs["loss"]), 9)
    0.298371109
    >>> sorted(result.gradients)
    ['W_h', 'W_o', 'b_h', 'b_o']

Write ops as data (:class:`OpDef`) and check them with :func:`check_op`.
"""

from . import (
    errors,
    render,  # noqa: F401  (registers the Jupyter display of graphs and results)
)
from .engine import (
    FanIn,
    GradResult,
    Plan,
    Trace,
    TraceStep,
    check_op,
    check_op_samples,
    gradcheck,
)
from .errors import (
    ArityError,
    CycleError,
    DanglingReferenceError,
    DataError,
    DuplicateIdError,
    DuplicateOpError,
    ExecutionError,
    FeedError,
    GradcheckError,
    GraphEngineError,
    GraphFileError,
    LimitError,
    NonFiniteError,
    OpAttributeError,
    PluginError,
    PluginImportError,
    RenderError,
    SaveError,
    SchemaError,
    ShapeError,
    TrainingError,
    UnknownOpError,
    UnsafePathError,
)
from .format import document_json_schema
from .graph import Graph, InputInfo, Limits, NodeInfo, load, load_dict, save
from .ops import (
    LossInfo,
    NoAttrs,
    OpDef,
    TensorSpec,
    broadcast_shapes,
    common_dtype,
    defop,
    elementwise_rule,
    elementwise_samples,
    unbroadcast,
)
from .registry import Registry, default_registry
from .training import TrainConfig, TrainResult, evaluate, train

__version__ = "0.1.0"

__all__ = [
    # loading and running
    "load",
    "load_dict",
    "Graph",
    "Plan",
    "GradResult",
    "Limits",
    "InputInfo",
    "NodeInfo",
    "Trace",
    "TraceStep",
    "FanIn",
    # plugins
    "OpDef",
    "defop",
    "elementwise_samples",
    "LossInfo",
    "NoAttrs",
    "TensorSpec",
    "Registry",
    "default_registry",
    "broadcast_shapes",
    "common_dtype",
    "elementwise_rule",
    "unbroadcast",
    # checking
    "check_op",
    "check_op_samples",
    "gradcheck",
    "document_json_schema",
    # training and saving
    "train",
    "evaluate",
    "TrainResult",
    "TrainConfig",
    "save",
    # errors: GraphEngineError and its subclasses
    *errors.__all__,
]
