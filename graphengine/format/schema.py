"""The graph file format, version 1, as pydantic models.

A graph file is JSON::

    {
      "format": "graphengine/v1",
      "dtype": "float64",
      "inputs":     [{"name": "x", "shape": [null, 2], "default": [[0.05, 0.10]]}],
      "parameters": [{"name": "W", "value": [[0.15, 0.20], [0.25, 0.30]]}],
      "constants":  [{"name": "half", "value": 0.5}],
      "nodes":      [{"id": "h", "op": "linear", "inputs": ["x", "W", "b"]}],
      "outputs": ["h"],
      "loss": "h"
    }

Every model forbids unknown fields, so a typo is an error rather than a silent
default. Node ``attrs`` are validated by each op's own attribute model when the
graph is built (see :mod:`graphengine.graph`); :func:`document_json_schema`
folds the registered ops' attribute models into the published JSON Schema.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    create_model,
    model_validator,
)

if TYPE_CHECKING:
    from ..registry import Registry

__all__ = [
    "FORMAT_V1",
    "DTypeName",
    "InputDecl",
    "TensorDecl",
    "NodeDecl",
    "GraphV1",
    "document_json_schema",
]

FORMAT_V1 = "graphengine/v1"

DTypeName = Literal["float32", "float64", "int32", "int64"]

#: Names of values and nodes: what a person would type, safe in a diagram and on a command line.
Name = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$",
        max_length=128,
        description="Identifier: a letter or _, then letters, digits, _, . or -.",
    ),
]

Dim = Annotated[int, Field(ge=0)]

_DIM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


def _input_dim(value: Any) -> int | str | None:
    # One validator for the three kinds, so an error names the dimension itself (not a union member).
    if value is None or (type(value) is int and value >= 0):
        return value  # type: ignore[no-any-return]
    if type(value) is str and _DIM_NAME.match(value):
        return value
    if type(value) is int:
        raise ValueError("Input should be greater than or equal to 0")
    raise ValueError(
        'a dimension is an integer >= 0, null (any size), or a name such as "batch" '
        "(a letter or _, then letters, digits or _; at most 64)"
    )


#: An input's dimension: a size, null (any size), or a name such as "batch" (any size, the same
#: size wherever the name appears in one call).
InputDim = Annotated[
    Union[int, str, None],
    PlainValidator(_input_dim),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$"},
                {"type": "null"},
            ],
            "description": "A size; null for any size; or a dimension name, which binds one size per call.",
        }
    ),
]

_NESTED_NUMBERS = {
    "description": "A number, or nested lists of numbers (row-major), e.g. [[1, 2], [3, 4]].",
    "anyOf": [{"type": "number"}, {"type": "array", "items": {"$ref": "#/$defs/NestedNumbers"}}],
}
#: Nested numbers are checked (and converted) by numpy in graph.py: validating a
#: large literal element by element in pydantic would be slow and recursive.
NestedNumbers = Annotated[Any, WithJsonSchema({"x-graphengine": "nested-numbers"})]


class _Strict(BaseModel):
    # strict: JSON types are taken as they are, so true is not a dimension of 1 and "2" is not 2.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class InputDecl(_Strict):
    """A value fed at run time."""

    name: Name
    shape: list[InputDim] = Field(
        description=(
            'Dimensions: a size; null for any size, fixed when fed; or a name such as "batch", '
            "which binds one size across every input that uses it in one call."
        )
    )
    dtype: Optional[DTypeName] = Field(None, description="Element type; default: the graph's dtype.")
    default: NestedNumbers = Field(None, description="Value used when none is fed.")
    description: Optional[str] = None


class TensorDecl(_Strict):
    """A parameter (trainable) or constant: inline ``value``, or ``file`` beside the graph."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"oneOf": [{"required": ["value"]}, {"required": ["file"]}]}
    )

    name: Name
    value: NestedNumbers = Field(None, description="Inline value.")
    file: Optional[str] = Field(
        None, description="A .npy or .npz file, relative to the graph file's folder and inside it."
    )
    key: Optional[str] = Field(None, description="Array name inside a .npz file; default: the tensor's name.")
    sha256: Optional[Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]] = Field(
        None, description="Expected SHA-256 of the file, checked on load."
    )
    shape: Optional[list[Dim]] = Field(None, description="Expected shape; checked against the value.")
    dtype: Optional[DTypeName] = Field(None, description="Element type; default: the graph's dtype.")
    description: Optional[str] = None

    @model_validator(mode="after")
    def _one_source(self) -> "TensorDecl":
        has_value, has_file = self.value is not None, self.file is not None
        if has_value == has_file:
            raise ValueError("give exactly one of 'value' or 'file'")
        if not has_file and (self.key is not None or self.sha256 is not None):
            raise ValueError("'key' and 'sha256' only go with 'file'")
        return self


class NodeDecl(_Strict):
    """One op application."""

    id: Name
    op: str = Field(description="A registered op name; see `graphengine ops`.")
    inputs: list[Name] = Field(description="Names of inputs, parameters, constants or nodes, in order.")
    attrs: dict[str, Any] = Field(default_factory=dict, description="The op's attributes.")
    label: Optional[str] = Field(None, description="Display label, e.g. a layer name.")
    description: Optional[str] = None


class GraphV1(_Strict):
    """A graph file, format version 1."""

    format: Literal["graphengine/v1"] = Field(description="File format and version.")
    name: Optional[str] = None
    description: Optional[str] = None
    dtype: Literal["float32", "float64"] = Field(
        "float64", description="Default element type of inputs, parameters and constants."
    )
    inputs: list[InputDecl] = Field(default_factory=list)
    parameters: list[TensorDecl] = Field(default_factory=list)
    constants: list[TensorDecl] = Field(default_factory=list)
    nodes: list[NodeDecl] = Field(default_factory=list)
    outputs: list[Name] = Field(min_length=1, description="Names of the values the graph returns.")
    loss: Optional[Name] = Field(
        None, description="The scalar that `grad` differentiates by default; default: the only output."
    )


def _node_model_for(op_name: str, attrs_model: type[BaseModel]) -> type[BaseModel]:
    required = any(f.is_required() for f in attrs_model.model_fields.values())
    op_type: Any = Literal[op_name]  # a type made at run time, which static checkers cannot follow
    return create_model(
        f"Node_{op_name}",
        __base__=NodeDecl,
        op=(op_type, ...),
        attrs=(attrs_model, ... if required else Field(default_factory=dict)),
    )


def document_json_schema(registry: "Registry") -> dict[str, Any]:
    """The JSON Schema of graph files, with the registered ops' attributes.

    Nodes whose ``op`` is registered are checked against that op's attribute
    model; other op names (from plugins not installed here) are allowed with any
    ``attrs``, because only the loader knows which plugins the user chose.

    Examples
    --------
    >>> from graphengine.registry import default_registry
    >>> schema = document_json_schema(default_registry())
    >>> schema["properties"]["format"]["const"]
    'graphengine/v1'
    """
    names = sorted(registry.ops)
    known = [_node_model_for(n, registry[n].attrs) for n in names]

    class OtherNode(NodeDecl):
        op: str = Field(  # type: ignore[assignment]
            description="An op from a plugin.", json_schema_extra={"not": {"enum": list[Any](names)}}
        )

    node_union: Any = Union[tuple(known + [OtherNode])]
    document = create_model("GraphFile", __base__=GraphV1, nodes=(list[node_union], Field(default_factory=list)))
    schema = _replace_placeholders(document.model_json_schema())
    schema["$defs"]["NestedNumbers"] = _NESTED_NUMBERS
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "graphengine graph file, format graphengine/v1"
    return schema


def _replace_placeholders(schema: Any) -> Any:
    # pydantic cannot emit a $ref to a definition it did not make; patch ours in afterwards.
    if isinstance(schema, dict):
        if schema.get("x-graphengine") == "nested-numbers":
            rest = {k: v for k, v in schema.items() if k != "x-graphengine"}
            return {**rest, "$ref": "#/$defs/NestedNumbers"}
        return {k: _replace_placeholders(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_replace_placeholders(v) for v in schema]
    return schema
