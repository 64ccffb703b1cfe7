"""The child process of `mkbench tasks import`: run one KernelBench-format file, export it.

    python -m mkbench.tasks.kernelbench_child FILE OUT_DIR

The file is code from outside, so it runs here, in a process of its own in the candidates'
jail (see kernelbench.child_jail), which the parent kills on its time limit, never in mkbench's
process. Steps: exec the file; seed torch with
0 and build Model(*get_init_inputs()).eval(); seed with 0 again and call get_inputs();
run forward; export to ONNX at opset 20 with the TorchScript-based exporter, falling back
to the torch.export-based one (needs onnxscript) where the first fails. It writes into
OUT_DIR: model.onnx, inputs.npz and outputs.npz (by name, in order; the outputs are y, or
y0, y1, ..., unless forward's inputs take those names) and result.json: {"ok": true, ...} or
{"ok": false, "error": "<one line>"}.

It also tries to read each input's distribution from get_inputs' source (see
`recognise_draws`) and proves the reading by replaying it: the draws, evaluated with torch
from the same seed, must give exactly the tensors get_inputs returned.

Exit status: 0 when result.json says what happened, 3 when torch cannot be imported.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np

TORCH_MISSING = 3
SEED = 0
OPSET = 20
DTYPES = {"float32", "float16", "int64", "int32", "bool", "uint8", "int8"}


class NotATask(Exception):
    """The file is not a usable task; the message is one line."""


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_of(error: BaseException) -> str:
    return one_line(f"{type(error).__name__}: {error}")


def missing_package(error: BaseException) -> str:
    """The one-line reason for a file that imports a package this Python lacks ("" otherwise).

    ROIAlign as published calls torchvision.ops.roi_align; torchvision does not install beside
    a CPU torch from PyPI (its pairing there is a CUDA build of several GB)."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return ""
    package = error.name.split(".")[0]
    return f"the file needs the Python package {package}, which is not installed here (No module named {error.name!r})"


# ------------------------------------------------------------------ running the file
def run_file(path: Path, out: Path, torch) -> dict:
    source = path.read_text(encoding="utf-8")
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as error:
        raise NotATask(f"syntax error at line {error.lineno}: {error.msg}") from None
    namespace = {"__name__": "kernelbench_task", "__file__": str(path)}
    try:
        exec(code, namespace)  # noqa: S102 - this process exists to run it
    except (Exception, SystemExit) as error:  # noqa: BLE001 - the file's own failure, reported in one line
        raise NotATask(missing_package(error) or f"running the file raised {error_of(error)}") from None
    missing = [f"{n}()" if n != "Model" else "class Model" for n in ("Model", "get_inputs", "get_init_inputs")
               if not callable(namespace.get(n))]
    if missing:
        raise NotATask(f"missing {', '.join(missing)}")

    torch.manual_seed(SEED)
    init_inputs = call(namespace["get_init_inputs"], "get_init_inputs()")
    if not isinstance(init_inputs, (list, tuple)):
        raise NotATask(f"get_init_inputs() returned {type(init_inputs).__name__}, not a list")
    model = call(lambda: namespace["Model"](*init_inputs), "Model(*get_init_inputs())")
    if not isinstance(model, torch.nn.Module):
        raise NotATask("Model is not a torch.nn.Module")
    model.eval()

    torch.manual_seed(SEED)
    inputs = call(namespace["get_inputs"], "get_inputs()")
    if isinstance(inputs, torch.Tensor) or not isinstance(inputs, (list, tuple)):
        raise NotATask(f"get_inputs() returned {type(inputs).__name__}, not a list of tensors")
    for index, value in enumerate(inputs):
        if not isinstance(value, torch.Tensor):
            raise NotATask(f"get_inputs() item {index} is {type(value).__name__}, not a tensor")
    names = forward_names(model, len(inputs))

    drawn = [t.clone() for t in inputs]  # as get_inputs gave them, should forward change its inputs in place
    with torch.no_grad():
        produced = call(lambda: model(*inputs), "forward")
    outputs = list(produced) if isinstance(produced, (list, tuple)) else [produced]
    if not outputs or not all(isinstance(o, torch.Tensor) for o in outputs):
        raise NotATask(f"forward returned {type(produced).__name__}, not a tensor or a tuple of tensors")
    output_names = graph_output_names(len(outputs), names)

    exporter = export(torch, model, inputs, names, output_names, out / "model.onnx")
    np.savez(out / "inputs.npz", **{n: to_numpy(t) for n, t in zip(names, drawn)})
    np.savez(out / "outputs.npz", **{n: to_numpy(t) for n, t in zip(output_names, outputs)})

    draws, made, seed = recognise_draws(source, len(inputs))
    if draws is not None and not replays(torch, draws, made, seed, drawn):
        draws, seed = None, SEED
    return {"ok": True, "exporter": exporter, "torch": torch.__version__, "inputs": names, "outputs": output_names,
            "draws": [d["draw"] for d in draws] if draws else [None] * len(inputs), "seed": seed,
            "init_args": init_args(namespace["Model"], init_inputs)}


def call(function, what: str):
    try:
        return function()
    except (Exception, SystemExit) as error:  # noqa: BLE001
        raise NotATask(missing_package(error) or f"{what} raised {error_of(error)}") from None


def forward_names(model, count: int) -> list[str]:
    """forward's argument names for the inputs; the arity must fit."""
    try:
        parameters = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return [f"x{i}" for i in range(count)]
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        named = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        return (named + [f"x{i}" for i in range(len(named), count)])[:count]
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if not len(required) <= count <= len(positional):
        takes = f"{len(required)}" if len(required) == len(positional) else f"{len(required)} to {len(positional)}"
        raise NotATask(f"get_inputs() returns {count} tensors but Model.forward takes {takes}")
    names = [p.name for p in positional[:count]]
    return names if len(set(names)) == len(names) else [f"x{i}" for i in range(count)]


def graph_output_names(count: int, input_names: list[str]) -> list[str]:
    """y (or y0, y1, ...), unless forward's inputs use those names: a graph output named like an
    input is no longer that input (an export with `forward(self, x, y)` loses y)."""
    for base in ("y", "out", "output", "result"):
        names = [base] if count == 1 else [f"{base}{i}" for i in range(count)]
        if not set(names) & set(input_names):
            return names
    return [f"output_{i}_" for i in range(count)]


def init_args(model_class, values) -> str:
    try:
        parameters = [p for p in inspect.signature(model_class.__init__).parameters.values()][1:]
    except (TypeError, ValueError):
        parameters = []
    named = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    parts = [f"{named[i]}={v!r}" if i < len(named) else repr(v) for i, v in enumerate(values)]
    return one_line(", ".join(parts), 1000)


def to_numpy(tensor) -> np.ndarray:
    array = tensor.detach().cpu().numpy()
    if str(array.dtype) not in DTYPES:
        raise NotATask(f"a tensor of dtype {array.dtype} (mkbench tasks take {', '.join(sorted(DTYPES))})")
    return np.ascontiguousarray(array).reshape(tuple(tensor.shape))


def export(torch, model, inputs, names, output_names, path: Path) -> str:
    """TorchScript-based export first (what the paper's graphs come from), else torch.export-based."""
    failures = []
    for dynamo in (False, True):
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(model, tuple(inputs), str(path), opset_version=OPSET, dynamo=dynamo,
                                  input_names=list(names), output_names=list(output_names), do_constant_folding=True)
            return "torch.export" if dynamo else "torchscript"
        except Exception as error:  # noqa: BLE001
            failures.append(f"{'torch.export' if dynamo else 'torchscript'}: {error_of(error)}")
            if path.exists():
                path.unlink()
    raise NotATask(one_line("ONNX export failed: " + "; ".join(failures), 400))


# ------------------------------------------------------------------ input distributions
class Unrecognised(Exception):
    pass


TORCH_DTYPES = {"float32": "float32", "float": "float32", "float16": "float16", "half": "float16", "int64": "int64",
                "long": "int64", "int32": "int32", "int": "int32", "bool": "bool", "uint8": "uint8", "int8": "int8"}
CASTS = {"float": "float32", "half": "float16", "long": "int64", "int": "int32", "bool": "bool"}


def recognise_draws(source: str, count: int) -> tuple[list[dict] | None, list, int]:
    """Each input's draw in mkbench's draw language, read from get_inputs' source.

    Recognised: get_inputs made of `name = <expr>` statements, an optional
    torch.manual_seed(N) before the draws, and `return [..]`, where an expression is
    torch.rand / randn / randint / zeros / ones / full / tensor(number) /
    empty(..).uniform_(a, b), arithmetic and comparisons with numbers, .bool() of a
    non-negative randint, and dtype casts; sizes may use module-level numeric constants.
    Returns (one draw per input, the draws in the order get_inputs makes them, seed), or
    (None, [], 0) for anything else (the inputs are then stored)."""
    try:
        tree = ast.parse(source)
        constants = module_constants(tree)
        function = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "get_inputs"][-1]
        env, seed, result, made = {}, SEED, None, []
        body = function.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # docstring
        for statement in body:
            if result is not None:
                raise Unrecognised("statements after return")
            if isinstance(statement, ast.Expr) and is_call(statement.value, "manual_seed"):
                if made:
                    raise Unrecognised("reseeding between draws")
                seed = number(statement.value.args[0], constants)
                if not isinstance(seed, int) or not 0 <= seed < 2**32:
                    raise Unrecognised("seed")
            elif isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(statement.targets[0], ast.Name):
                value = translate(statement.value, env, constants)
                if isinstance(value, dict) and not any(value is d for d in made):
                    made.append(value)
                env[statement.targets[0].id] = value
            elif isinstance(statement, ast.Return) and statement.value is not None:
                items = statement.value.elts if isinstance(statement.value, (ast.List, ast.Tuple)) else [statement.value]
                result = []
                for item in items:
                    value = translate(item, env, constants)
                    if isinstance(value, dict) and not any(value is d for d in made):
                        made.append(value)
                    result.append(value)
            else:
                raise Unrecognised(type(statement).__name__)
        if result is None or len(result) != count or not all(isinstance(r, dict) for r in result):
            raise Unrecognised("return")
        for draw in made:
            draw["draw"] = ast.unparse(draw["tree"])
        return result, made, seed
    except (Unrecognised, SyntaxError, IndexError, KeyError, ValueError, TypeError, AttributeError, RecursionError):
        return None, [], SEED


def module_constants(tree: ast.Module) -> dict:
    constants = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(statement.targets[0], ast.Name):
            try:
                constants[statement.targets[0].id] = number(statement.value, constants)
            except Unrecognised:
                constants.pop(statement.targets[0].id, None)
        elif isinstance(statement, ast.Assign):
            for target in statement.targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        constants.pop(name.id, None)
    return constants


def number(node: ast.expr, constants: dict):
    """A numeric literal, a module constant, or +-*/ // of those (bounded)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    if is_pi(node):
        return math.pi
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = number(node.operand, constants)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv)):
        left, right = number(node.left, constants), number(node.right, constants)
        value = {ast.Add: lambda: left + right, ast.Sub: lambda: left - right, ast.Mult: lambda: left * right,
                 ast.Div: lambda: left / right, ast.FloorDiv: lambda: left // right}[type(node.op)]()
        if abs(value) > 2**40:
            raise Unrecognised("number too large")
        return value
    raise Unrecognised("not a number")


def is_pi(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "pi" and isinstance(node.value, ast.Name)
            and node.value.id in ("math", "torch", "np"))


def number_tree(node: ast.expr, value, constants: dict) -> ast.expr:
    """A number in a draw: written with `pi` where the source writes math.pi (`2 * pi * rand - pi`,
    as the paper's table does), else as its value."""
    if not any(is_pi(n) for n in ast.walk(node)):
        return ast.Constant(value)
    if is_pi(node):
        return ast.Name("pi")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return ast.UnaryOp(ast.USub(), number_tree(node.operand, number(node.operand, constants), constants))
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
        return ast.BinOp(number_tree(node.left, number(node.left, constants), constants), node.op,
                         number_tree(node.right, number(node.right, constants), constants))
    return ast.Constant(value)


def is_call(node, name: str) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch")


def size_of(args: list[ast.expr], constants: dict) -> tuple[int, ...]:
    if len(args) == 1 and isinstance(args[0], (ast.Tuple, ast.List)):
        args = args[0].elts
    dims = tuple(number(a, constants) for a in args)
    if not all(isinstance(d, int) and 0 < d <= 2**31 for d in dims):
        raise Unrecognised("size")
    return dims


def keyword_dtype(call: ast.Call, default: str) -> str:
    for keyword in call.keywords:
        if keyword.arg == "dtype":
            return torch_dtype(keyword.value)
        if keyword.arg not in ("device", "requires_grad"):
            raise Unrecognised(f"keyword {keyword.arg}")
    return default


def torch_dtype(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "torch" and node.attr in TORCH_DTYPES:
        return TORCH_DTYPES[node.attr]
    raise Unrecognised("dtype")


def leaf(tree: ast.expr, shape, dtype: str, random: bool = True) -> dict:
    return {"tree": tree, "shape": shape, "dtype": dtype, "random": random}


def translate(node: ast.expr, env: dict, constants: dict):
    """A draw {tree (mkbench draw language), shape, dtype} or a number."""
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    try:
        return number(node, constants)
    except Unrecognised:
        pass
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        attr = node.func.attr
        if is_call(node, "rand") or is_call(node, "randn"):
            return leaf(ast.Name(attr), size_of(node.args, constants), keyword_dtype(node, "float32"))
        if is_call(node, "zeros") or is_call(node, "ones"):
            return leaf(ast.Name(attr), size_of(node.args, constants), keyword_dtype(node, "float32"), False)
        if is_call(node, "randint"):
            bounds = [number(a, constants) for a in node.args[:-1]]
            low, high = (0, bounds[0]) if len(bounds) == 1 else bounds
            if not all(isinstance(b, int) for b in (low, high)):
                raise Unrecognised("randint bounds")
            tree = ast.Call(ast.Name("randint"), [ast.Constant(low), ast.Constant(high)], [])
            return leaf(tree, size_of([node.args[-1]], constants), keyword_dtype(node, "int64"))
        if is_call(node, "full"):
            value = number(node.args[1], constants)
            dtype = keyword_dtype(node, "float32" if isinstance(value, float) else "int64")
            return leaf(ast.Call(ast.Name("full"), [ast.Constant(value)], []), size_of([node.args[0]], constants), dtype, False)
        if is_call(node, "tensor") and len(node.args) == 1:
            value = number(node.args[0], constants)
            dtype = keyword_dtype(node, "float32" if isinstance(value, float) else "int64")
            return leaf(ast.Call(ast.Name("const"), [ast.Constant(value)], []), (), dtype, False)
        if attr == "uniform_" and is_call(node.func.value, "empty"):
            low, high = (number(a, constants) for a in node.args)
            inner = node.func.value
            tree = ast.Call(ast.Name("uniform"), [ast.Constant(float(low)), ast.Constant(float(high))], [])
            return leaf(tree, size_of(inner.args, constants), keyword_dtype(inner, "float32"))
        if attr in CASTS and not node.args:
            base = translate(node.func.value, env, constants)
            return cast(base, CASTS[attr])
        if attr == "to" and len(node.args) == 1 and not node.keywords:
            return cast(translate(node.func.value, env, constants), torch_dtype(node.args[0]))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        operand = translate(node.operand, env, constants)
        if isinstance(operand, dict):
            return dict(operand, tree=ast.UnaryOp(ast.USub(), operand["tree"]))
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
        left, right = translate(node.left, env, constants), translate(node.right, env, constants)
        draws = [d for d in (left, right) if isinstance(d, dict)]
        if len({d["shape"] for d in draws}) != 1:
            raise Unrecognised("shapes")
        trees = [d["tree"] if isinstance(d, dict) else number_tree(side, d, constants)
                 for d, side in ((left, node.left), (right, node.right))]
        floating = isinstance(node.op, ast.Div) or any(d["dtype"].startswith("float") for d in draws) or any(
            isinstance(v, float) for v in (left, right))
        dtype = "float32" if floating else draws[0]["dtype"]
        if any(d["dtype"] not in ("float32", "int64") for d in draws):
            raise Unrecognised("arithmetic dtype")
        return leaf(ast.BinOp(trees[0], node.op, trees[1]), draws[0]["shape"], dtype, any(d["random"] for d in draws))
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.Gt, ast.Lt, ast.GtE, ast.LtE)):
        left, right = translate(node.left, env, constants), translate(node.comparators[0], env, constants)
        if not isinstance(left, dict) or isinstance(right, dict):
            raise Unrecognised("comparison")
        return leaf(ast.Compare(left["tree"], node.ops, [ast.Constant(right)]), left["shape"], "bool", left["random"])
    raise Unrecognised(ast.dump(node)[:80])


def cast(draw, dtype: str) -> dict:
    if not isinstance(draw, dict):
        raise Unrecognised("cast of a number")
    if dtype == "bool":
        tree = draw["tree"]
        # randint(a, b).bool() with a >= 0 is randint(a, b) > 0 (the paper's randint[0,2).bool())
        if isinstance(tree, ast.Call) and tree.func.id == "randint" and tree.args[0].value >= 0:
            return dict(draw, tree=ast.Compare(tree, [ast.Gt()], [ast.Constant(0)]), dtype="bool")
        raise Unrecognised(".bool() of a non-randint")
    return dict(draw, dtype=dtype)


def replays(torch, draws: list[dict], made: list[dict], seed: int, inputs) -> bool:
    """Evaluate the recognised draws with torch from the same seed, in the order get_inputs
    made them: they must give exactly the tensors it returned."""
    try:
        torch.manual_seed(SEED)
        torch.manual_seed(seed)
        produced = {id(d): replay(torch, d["tree"], d["shape"]).to(getattr(torch, d["dtype"])) for d in made}
        return all(torch.equal(produced[id(d)], t) for d, t in zip(draws, inputs))
    except Exception:  # noqa: BLE001 - a replay that cannot run is a draw we do not trust
        return False


def replay(torch, node: ast.expr, shape):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in ("rand", "randn", "zeros", "ones"):
            return getattr(torch, node.id)(shape)
        if node.id == "pi":
            return math.pi
    if isinstance(node, ast.UnaryOp):
        return -replay(torch, node.operand, shape)
    if isinstance(node, ast.BinOp):
        left, right = replay(torch, node.left, shape), replay(torch, node.right, shape)
        return {ast.Add: lambda: left + right, ast.Sub: lambda: left - right, ast.Mult: lambda: left * right,
                ast.Div: lambda: left / right}[type(node.op)]()
    if isinstance(node, ast.Compare):
        left, right = replay(torch, node.left, shape), replay(torch, node.comparators[0], shape)
        return {ast.Gt: lambda: left > right, ast.Lt: lambda: left < right, ast.GtE: lambda: left >= right,
                ast.LtE: lambda: left <= right}[type(node.ops[0])]()
    if isinstance(node, ast.Call):
        args = [a.value for a in node.args]
        if node.func.id == "randint":
            return torch.randint(args[0], args[1], shape)
        if node.func.id in ("full", "const"):
            return torch.full(shape, args[0])
        if node.func.id == "uniform":
            return torch.empty(shape).uniform_(args[0], args[1])
    raise ValueError(f"cannot replay {ast.dump(node)}")


# ------------------------------------------------------------------ main
def main(argv: list[str]) -> int:
    path, out = Path(argv[0]), Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    result_path = out / "result.json"
    try:
        import torch
    except ImportError as error:
        result_path.write_text(json.dumps({"ok": False, "torch_missing": True, "error": error_of(error)}))
        print(f"torch cannot be imported: {error}", file=sys.stderr)
        return TORCH_MISSING
    try:
        result = run_file(path, out, torch)
    except NotATask as error:
        result = {"ok": False, "error": str(error)}
    except Exception as error:  # noqa: BLE001
        result = {"ok": False, "error": error_of(error)}
    result_path.write_text(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
