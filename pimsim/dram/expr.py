"""Latency expressions: tiny integer arithmetic over timing-parameter names.

``"nCL + nBL + 2 - nCWL"`` or ``"max(nRTP, nBL)"``. Parsed with :mod:`ast` and evaluated by walking
the tree, so a standard's table can never execute code.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from functools import lru_cache

_FUNCS = {"max": max, "min": min}


class ExpressionError(ValueError):
    pass


@lru_cache(maxsize=None)
def _parse(text: str) -> ast.AST:
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse latency expression {text!r}: {exc.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Name, ast.Load,
                             ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.USub, ast.Call)):
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            continue
        raise ExpressionError(f"latency expression {text!r} may only use integers, names, + - * // and max/min")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _FUNCS):
            raise ExpressionError(f"latency expression {text!r} calls something other than max/min")
    return tree


def names_in(text: str) -> set[str]:
    """Timing-parameter names an expression refers to (function names excluded)."""
    tree = _parse(text)
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - calls


def evaluate(text: str, values: Mapping[str, int]) -> int:
    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            try:
                return int(values[node.id])
            except KeyError:
                raise ExpressionError(f"{text!r}: no value for {node.id}") from None
        if isinstance(node, ast.UnaryOp):
            return -ev(node.operand)
        if isinstance(node, ast.BinOp):
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Add):
                return a + b
            if isinstance(node.op, ast.Sub):
                return a - b
            if isinstance(node.op, ast.Mult):
                return a * b
            return a // b
        if isinstance(node, ast.Call):
            return _FUNCS[node.func.id](*(ev(a) for a in node.args))
        raise ExpressionError(f"unsupported node in {text!r}")  # unreachable after _parse

    return ev(_parse(text))
