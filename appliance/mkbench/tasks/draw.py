"""How task inputs and constants are drawn: small, seeded expressions.

A draw is written as in the paper's table, e.g. `2.0 * rand - 1.0`, `randint(0, 64)`,
`rand > 0.5`, `const(1.0)`, `uniform(-0.1, 0.1)`, `hann_window(200, 256)`. It is parsed
with Python's `ast` and evaluated over a whitelist only; every `rand`/`randn` in it draws
a fresh array of the tensor's shape from the generator it is given.
"""

from __future__ import annotations

import ast
import math

import numpy as np

NAMES = {"rand", "randn", "pi", "zeros", "ones"}
FUNCTIONS = {"randint", "uniform", "full", "const", "hann_window"}
BINARY = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}
COMPARE = {ast.Gt: np.greater, ast.Lt: np.less, ast.GtE: np.greater_equal, ast.LtE: np.less_equal}


def check_expression(expression: str) -> None:
    """Raise ValueError if the expression uses anything outside the draw language."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as error:
        raise ValueError(f"cannot parse draw {expression!r}: {error.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in NAMES | FUNCTIONS:
            raise ValueError(f"unknown name {node.id!r} in draw {expression!r}")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS):
            raise ValueError(f"unknown function in draw {expression!r}")
        if not isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.USub, ast.Compare, ast.Call, ast.Name,
                                 ast.Constant, ast.Load, *BINARY, *COMPARE)):
            raise ValueError(f"{type(node).__name__} is not allowed in draw {expression!r}")


def draw(expression: str, shape: tuple[int, ...], dtype: str, rng: np.random.Generator) -> np.ndarray:
    """Evaluate a draw expression into an array of the given shape and dtype."""
    check_expression(expression)
    value = _eval(ast.parse(expression, mode="eval").body, shape, rng)
    array = np.broadcast_to(np.asarray(value), shape)
    # np.array(order="C") keeps 0-d draws 0-d (ascontiguousarray would make them [1]).
    return np.array(array, dtype=bool if dtype == "bool" else np.dtype(dtype), order="C", copy=True)


def _eval(node: ast.AST, shape: tuple[int, ...], rng: np.random.Generator):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id == "rand":
            return rng.random(shape, dtype=np.float32)
        if node.id == "randn":
            return rng.standard_normal(shape, dtype=np.float32)
        if node.id == "pi":
            return math.pi
        if node.id == "zeros":
            return np.zeros(shape, np.float32)
        if node.id == "ones":
            return np.ones(shape, np.float32)
    if isinstance(node, ast.UnaryOp):
        return -_eval(node.operand, shape, rng)
    if isinstance(node, ast.BinOp):
        return BINARY[type(node.op)](_eval(node.left, shape, rng), _eval(node.right, shape, rng))
    if isinstance(node, ast.Compare):
        return COMPARE[type(node.ops[0])](_eval(node.left, shape, rng), _eval(node.comparators[0], shape, rng))
    if isinstance(node, ast.Call):
        args = [_eval(a, shape, rng) for a in node.args]
        name = node.func.id
        if name == "randint":
            return rng.integers(int(args[0]), int(args[1]), size=shape)
        if name == "uniform":
            return rng.uniform(args[0], args[1], size=shape).astype(np.float32)
        if name in ("full", "const"):
            return np.full(shape, args[0], dtype=np.float32 if isinstance(args[0], float) else np.int64)
        if name == "hann_window":
            return hann_window(int(args[0]), int(args[1]))
    raise ValueError(f"cannot evaluate {ast.dump(node)}")


def hann_window(win_length: int, n_fft: int) -> np.ndarray:
    """torch.hann_window(win_length) (periodic), zero-padded on both sides to n_fft, as
    torch.stft does with a window shorter than n_fft."""
    n = np.arange(win_length)
    window = (0.5 - 0.5 * np.cos(2 * np.pi * n / win_length)).astype(np.float32)
    left = (n_fft - win_length) // 2
    return np.pad(window, (left, n_fft - win_length - left))
