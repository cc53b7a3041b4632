"""Mathematical semantics: shapes, primitives (shape rule + meaning), the graph IR, exact evaluation."""

from . import elementwise, nnops, tensorops  # noqa: F401  (register primitives)
from .graph import Graph, GraphError, Node, Value
from .primitives import PRIMITIVES, Primitive, get
from .shapes import ShapeError

__all__ = ["PRIMITIVES", "Graph", "GraphError", "Node", "Primitive", "ShapeError", "Value", "get"]
