"""The calculator tool: right answers, clear refusals, and no hang on abuse."""

import asyncio
import time

import pytest

from chat.tools.calculator import evaluate
from chat.tools.registry import ToolContext, ToolError, get_tool


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 + 2", "4"),
        ("2 + 3 * 4", "14"),
        ("(2 + 3) * 4", "20"),
        ("2 ** 3 ** 2", "512"),  # right-associative
        ("-2 ** 2", "-4"),  # ** binds tighter than unary minus
        ("(-2) ** 2", "4"),
        ("--3", "3"),
        ("+5 - -5", "10"),
        ("7 / 2", "3.5"),
        ("7 // 2", "3"),
        ("-7 // 2", "-4"),
        ("7 % 3", "1"),
        ("0.1 + 0.2", "0.3"),
        ("1 / 3", "0.333333333333333"),
        ("4 / 2", "2"),
        ("1e3 * 2", "2000"),
        ("-0.0", "0"),
        ("2 ** -1", "0.5"),
        ("sqrt(16)", "4"),
        ("sqrt(2)", "1.4142135623731"),
        ("abs(-3)", "3"),
        ("round(2.675, 2)", "2.67"),  # float rounding, as Python does it
        ("round(2.5)", "2"),
        ("floor(-1.5)", "-2"),
        ("ceil(1.2)", "2"),
        ("log(e)", "1"),
        ("log(8, 2)", "3"),
        ("log10(1000)", "3"),
        ("exp(0)", "1"),
        ("sin(0) + cos(0)", "1"),
        ("tan(pi / 4)", "1"),
        ("pi", "3.14159265358979"),
        ("  1 +\n 2 ", "3"),  # leading space and line breaks are fine
        ("1_000 * 3", "3000"),
    ],
)
def test_results(expression: str, expected: str) -> None:
    assert evaluate(expression) == expected


def test_integers_are_exact() -> None:
    assert evaluate("2 ** 100") == str(2**100)
    assert evaluate("2 ** 100 + 1") == "1267650600228229401496703205377"
    assert evaluate("10 ** 999") == "1" + "0" * 999
    # 99! by repeated multiplication: ~156 digits, allowed.
    assert evaluate(" * ".join(str(i) for i in range(1, 100))) == str(__import__("math").factorial(99))


def test_long_flat_sum_is_not_deep_nesting() -> None:
    # 150 terms nest 150 deep in the AST, but a flat sum is not "nesting" to a reader.
    assert evaluate("+".join(["2"] * 150)) == "300"
    assert evaluate("1-" * 120 + "1") == "-119"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "Division by zero."),
        ("1 // 0", "Division by zero."),
        ("5 % 0", "Division by zero."),
        ("0 ** -1", "Division by zero."),
        ("x + 1", "Unknown name 'x'. Allowed: abs, ceil, cos, e, exp, floor, log, log10, pi, round, sin, sqrt, tan."),
        ("__import__('os')", "Unknown name '__import__'. Allowed:"),
        ("open('/etc/passwd')", "Unknown name 'open'."),
        ("(1).__class__", "Only arithmetic is allowed: attribute access"),
        ("math.sqrt(4)", "Only arithmetic is allowed: attribute access"),
        ("(lambda: 1)()", "Only arithmetic is allowed:"),
        ("lambda: 1", "Only arithmetic is allowed: lambda"),
        ("[x for x in (1, 2)]", "Only arithmetic is allowed: comprehensions"),
        ("sum(x for x in (1, 2))", "Unknown name 'sum'."),
        ("(x := 1)", "Only arithmetic is allowed: assignments"),
        ("1 < 2", "Only arithmetic is allowed: comparisons"),
        ("'a' * 3", "Only arithmetic is allowed: text"),
        ("1j * 1j", "Only arithmetic is allowed: complex numbers"),
        ("True + 1", "Only arithmetic is allowed:"),
        ("2 ^ 3", "use ** for powers"),
        ("1 << 3", "Only arithmetic is allowed: bitwise"),
        ("1,000", "commas"),
        ("sqrt", "'sqrt' is a function"),
        ("pi(2)", "'pi' is a constant"),
        ("sqrt(1, 2)", "sqrt() takes 1 argument, not 2."),
        ("sqrt(x=4)", "Pass the arguments of sqrt() as plain values."),
        ("sqrt(-1)", "sqrt() is not defined for -1."),
        ("log(0)", "log() is not defined for 0."),
        ("(-8) ** (1 / 3)", "not a real number"),
        ("round(1.5, 1000)", "round() takes a whole number of digits"),
        ("exp(1000)", "too large"),
        ("1e308 * 10", "too large"),
        ("10.0 ** 400", "too large"),
        ("2 ** 10000", "too large"),
        ("10 ** 999 * 10 ** 999", "too large"),
        ("", "The expression is empty."),
        ("1 +", "Not a valid arithmetic expression"),
        ("-" * 60 + "1", "nested too deeply"),
        ("sqrt(" * 60 + "1" + ")" * 60, "nested too deeply"),
        ("1 + (" * 60 + "1" + ")" * 60, "nested too deeply"),
        ("(" * 201 + "1" + ")" * 201, "Not a valid arithmetic expression"),
        ("1" * 501, "The expression is too long (501 characters; the limit is 500)."),
    ],
)
def test_refusals(expression: str, message: str) -> None:
    with pytest.raises(ToolError) as info:
        evaluate(expression)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "expression",
    [
        "9**9**9**9",
        "2**10000000",
        "2**-(10**400)",
        "(-2)**10**400",
        "1.5**10**400",
        "10**999*10**999",
        "10**999*10**999*10**999",
        "(10**999)**2",
        "round(10**999, -10**9)",
        "(" * 10000 + "1" + ")" * 10000,
        "-" * 499 + "1",
        "1+" * 50000 + "1",
        "9" * 100000,
    ],
)
def test_abuse_is_refused_quickly(expression: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ToolError):
        evaluate(expression)
    # A guard against hangs, not a benchmark: each of these refuses in microseconds.
    assert time.perf_counter() - start < 1.0


def test_tool_is_registered_and_runs() -> None:
    tool = get_tool("calculator")
    assert tool is not None
    assert tool.parameters["required"] == ["expression"]
    ctx = ToolContext(user_id=1, conversation_id=1)
    assert asyncio.run(tool.run({"expression": "6 * 7"}, ctx)) == "42"
    for bad in ({}, {"expression": 42}, {"expression": None}):
        with pytest.raises(ToolError, match="'expression' argument is required"):
            asyncio.run(tool.run(bad, ctx))
