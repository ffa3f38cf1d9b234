"""The `calculator` tool: exact arithmetic for the model, without eval.

The expression comes from a model that may be steered by whoever wrote the prompt,
so it is treated as hostile: it is parsed with `ast` and only a whitelist of nodes
is evaluated, and every step that could blow up (huge powers, huge integers, deep
nesting) is refused before it costs real time or memory. Messages of ToolError are
shown to users, so they say what was wrong in plain words.
"""

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from chat.tools.registry import Tool, ToolContext, ToolError, register

MAX_LENGTH = 500
MAX_DEPTH = 50
MAX_DIGITS = 1000
# An int with more bits than this has more than MAX_DIGITS decimal digits; checking
# bit_length() is O(1), while str() of a big int is quadratic.
_MAX_BITS = math.ceil(MAX_DIGITS / math.log10(2))

Number = int | float

_BINARY_OPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}

_UNARY_OPS: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    # round(10**999, -10**9) would build 10**(10**9); keep ndigits small.
    if not isinstance(ndigits, int) or abs(ndigits) > 100:
        raise ToolError("round() takes a whole number of digits between -100 and 100.")
    return round(x, ndigits)


# name -> (function, min args, max args)
_FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int]] = {
    "sqrt": (math.sqrt, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "log": (math.log, 1, 2),
    "log10": (math.log10, 1, 1),
    "exp": (math.exp, 1, 1),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
}

_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}

_ALLOWED = ", ".join(sorted([*_FUNCTIONS, *_CONSTANTS]))

# Words for the node types people (and models) most often try, so the refusal says
# what was wrong instead of naming an AST class.
_NODE_WORDS: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "indexing",
    ast.Lambda: "lambda functions",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.Compare: "comparisons",
    ast.BoolOp: "and/or",
    ast.IfExp: "if/else",
    ast.List: "lists",
    ast.Dict: "dictionaries",
    ast.Set: "sets",
    ast.NamedExpr: "assignments",
    ast.JoinedStr: "text",
    ast.Starred: "unpacking",
    ast.Await: "await",
}


def evaluate(expression: str) -> str:
    """The value of an arithmetic expression, as text; ToolError if refused."""
    if len(expression) > MAX_LENGTH:
        raise ToolError(f"The expression is too long ({len(expression)} characters; the limit is {MAX_LENGTH}).")
    # Collapse whitespace: a leading space or a line break is a syntax error in eval
    # mode, and neither changes the meaning of arithmetic.
    source = " ".join(expression.split())
    if not source:
        raise ToolError("The expression is empty.")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"Not a valid arithmetic expression: {exc.msg}.") from None
    except (RecursionError, MemoryError):
        raise ToolError(f"The expression is nested too deeply (the limit is {MAX_DEPTH} levels).") from None
    except ValueError:  # null bytes on some Python versions
        raise ToolError("Not a valid arithmetic expression: it contains a null character.") from None
    return _format(_eval(tree.body, 0))


def _format(value: Number) -> str:
    if isinstance(value, int):
        return str(value)
    if value == 0:
        value = 0.0  # no "-0"
    # 15 significant digits hide binary noise: 0.1 + 0.2 gives "0.3".
    return format(value, ".15g")


def _check(value: object) -> Number:
    """Refuses results that are not real, finite numbers of a sane size."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, complex):
            raise ToolError("The result is not a real number (for example, a fractional power of a negative number).")
        raise ToolError("The result is not a number.")
    if isinstance(value, int):
        if value.bit_length() > _MAX_BITS:
            raise ToolError(f"The result is too large (more than about {MAX_DIGITS} digits).")
    elif not math.isfinite(value):
        raise ToolError("The result is too large to represent as a number.")
    return value


def _eval(node: ast.AST, depth: int) -> Number:
    if depth > MAX_DEPTH:
        raise ToolError(f"The expression is nested too deeply (the limit is {MAX_DEPTH} levels).")
    if isinstance(node, ast.BinOp):
        return _eval_chain(node, depth)
    if isinstance(node, ast.UnaryOp):
        unary = _UNARY_OPS.get(type(node.op))
        if unary is None:
            raise ToolError("Only arithmetic is allowed: 'not' and '~' cannot be used.")
        return _check(unary(_eval(node.operand, depth + 1)))
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            what = "complex numbers" if isinstance(node.value, complex) else "text and other literals"
            raise ToolError(f"Only arithmetic is allowed: {what} cannot be used.")
        return _check(node.value)
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if node.id in _FUNCTIONS:
            raise ToolError(f"'{node.id}' is a function; call it like {node.id}(2).")
        raise ToolError(f"Unknown name '{node.id}'. Allowed: {_ALLOWED}.")
    if isinstance(node, ast.Call):
        return _eval_call(node, depth)
    if isinstance(node, ast.Tuple):
        raise ToolError("Only arithmetic is allowed: commas cannot be used (write 1000, not 1,000).")
    what = _NODE_WORDS.get(type(node), type(node).__name__)
    raise ToolError(f"Only arithmetic is allowed: {what} cannot be used.")


def _eval_chain(node: ast.BinOp, depth: int) -> Number:
    # Left-associative chains (1 + 2 + ... + 200) nest on the left; walking them in
    # a loop keeps a long but flat sum from counting as deep nesting.
    steps: list[tuple[ast.operator, ast.expr]] = []
    left: ast.expr = node
    while isinstance(left, ast.BinOp):
        steps.append((left.op, left.right))
        left = left.left
    value = _eval(left, depth + 1)
    for op, right in reversed(steps):
        value = _apply(op, value, _eval(right, depth + 1))
    return value


def _apply(op: ast.operator, a: Number, b: Number) -> Number:
    func = _BINARY_OPS.get(type(op))
    if func is None:
        if isinstance(op, ast.BitXor):
            raise ToolError("Only arithmetic is allowed: use ** for powers (^ cannot be used).")
        raise ToolError("Only arithmetic is allowed: bitwise operators and @ cannot be used.")
    if isinstance(op, ast.Pow):
        _check_power(a, b)
    try:
        return _check(func(a, b))
    except ZeroDivisionError:
        raise ToolError("Division by zero.") from None
    except OverflowError:
        raise ToolError("The result is too large to represent as a number.") from None


def _check_power(base: Number, exponent: Number) -> None:
    """Refuses powers whose result would be huge, before computing them."""
    if base == 0 or abs(base) == 1:
        return  # 0, 1 and -1 to any power stay small (0 ** -1 fails as division by zero)
    try:
        digits = exponent * math.log10(abs(base))
    except OverflowError:  # an exponent too big even to convert to float
        digits = math.inf if exponent > 0 else -math.inf
    if digits > MAX_DIGITS:
        raise ToolError(f"The result is too large (more than about {MAX_DIGITS} digits).")


def _eval_call(node: ast.Call, depth: int) -> Number:
    if isinstance(node.func, ast.Attribute):
        raise ToolError("Only arithmetic is allowed: attribute access cannot be used; write sqrt(2), not math.sqrt(2).")
    if not isinstance(node.func, ast.Name):
        raise ToolError("Only arithmetic is allowed: only the listed functions can be called, by name.")
    name = node.func.id
    if name in _CONSTANTS:
        raise ToolError(f"'{name}' is a constant, not a function.")
    if name not in _FUNCTIONS:
        raise ToolError(f"Unknown name '{name}'. Allowed: {_ALLOWED}.")
    if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
        raise ToolError(f"Pass the arguments of {name}() as plain values.")
    func, min_args, max_args = _FUNCTIONS[name]
    if not min_args <= len(node.args) <= max_args:
        expected = str(min_args) if min_args == max_args else f"{min_args} or {max_args}"
        raise ToolError(f"{name}() takes {expected} argument{'s' if max_args > 1 else ''}, not {len(node.args)}.")
    args = [_eval(arg, depth + 1) for arg in node.args]
    try:
        return _check(func(*args))
    except ZeroDivisionError:
        raise ToolError("Division by zero.") from None
    except OverflowError:
        raise ToolError("The result is too large to represent as a number.") from None
    except ValueError:  # math domain errors: sqrt(-1), log(0)
        raise ToolError(f"{name}() is not defined for {', '.join(_format(a) for a in args)}.") from None


async def _run(args: dict[str, Any], ctx: ToolContext) -> str:
    expression = args.get("expression")
    if not isinstance(expression, str):
        raise ToolError("The 'expression' argument is required and must be a string.")
    # Evaluated inline: every step is bounded above, so this cannot block the loop for long.
    return evaluate(expression)


register(
    Tool(
        name="calculator",
        description=(
            "Evaluate an arithmetic expression exactly and return its value. Use this for any calculation "
            "instead of doing arithmetic in your head. Integers are exact (arbitrary precision, up to about "
            f"{MAX_DIGITS} digits); anything with / or a decimal point gives a float shown to 15 significant digits. "
            "Supports + - * / // (floor division) % ** (power; not ^), unary minus, parentheses, "
            "the constants pi and e, and the functions sqrt, sin, cos, tan (radians), log (natural, or log(x, base)), "
            "log10, exp, abs, round (round(x) or round(x, digits)), floor and ceil. "
            "No variables, units, percent signs or thousands separators: write 1500 * 0.2, not 20% of 1,500."
        ),
        parameters={
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    "description": 'The expression in Python-like syntax, e.g. "(3 + 4) * 2 ** 10 / sqrt(2)". '
                    f"At most {MAX_LENGTH} characters.",
                },
            },
            "required": ["expression"],
        },
        run=_run,
    )
)
