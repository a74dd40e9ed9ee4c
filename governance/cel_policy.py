"""CEL policy files: the generic engine behind `governance.policy`.

A policy file is YAML whose rules are CEL expressions (package
`common-expression-language`, import `cel`); nothing is ever passed to Python's
`eval`. One file is one versioned policy:

    policy_id: payout-limits          # stable id
    version: "1.0.0"                  # a quoted string; recorded with every decision
    kind: payout                      # which interface the policy set expects from it
    description: ...
    constants:                        # named values the rules read (numbers, strings, lists, maps)
      MAX_PAYOUT: 250000.0
    rules:
      may_pay:
        inputs: {amount: double, route: string}   # the only variables the rule may read besides constants
        returns: bool                 # bool | int | double | string | list | map | any
        expr: CEL                     # either one expression ...
        cases:                        # ... or an ordered first-match list of cases
          - {name: over_limit, when: "amount > MAX_PAYOUT", then: false}
        default: true                 # result when no case matches
    tests:                            # the table of sample inputs and expected outcomes
      - {rule: may_pay, input: {amount: 10.0, route: auto_approve}, expect: true}

Loading (`load_policy_file`) parses and checks, and runs nothing of the table's
expectations: YAML and CEL must parse; every variable a rule references must be
one of its declared inputs, a constant, or a comprehension variable; every rule
is evaluated once on a typed default sample and once on each of its table
inputs so that a type error (CEL checks types only at run time) refuses the file
at load; results must have the declared type. Any failure raises `PolicyError`
naming the file, the line and the rule. `run_table(policy)` compares the
table's expectations (the test suite and `aios policy check` call it).

Besides CEL's standard library, rules may call `re_find(text, pattern)`: a
Python `re.search` with a compiled-pattern cache (CEL's own `matches` compiles
its regex on every call, ~0.5 ms each).
"""

from __future__ import annotations

import hashlib
import keyword
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml


def _import_cel():  # noqa: ANN202
    """Import the CEL package without its REPL: `cel/__init__` eagerly imports `cel.cli`, which pulls
    prompt_toolkit and costs ~1.4 s per process. A placeholder stands in for `cel.cli` during the
    import and is removed again, so a later `import cel.cli` still loads the real one."""
    import sys
    import types

    if "cel" in sys.modules:
        return sys.modules["cel"]
    stub = types.ModuleType("cel.cli")
    sys.modules["cel.cli"] = stub
    try:
        import cel as module
    finally:
        if sys.modules.get("cel.cli") is stub:
            del sys.modules["cel.cli"]
    if getattr(module, "cli", None) is stub:
        delattr(module, "cli")
    return module


cel = _import_cel()

TYPES = ("bool", "int", "double", "string", "list", "map", "any")
_SAMPLES: dict[str, Any] = {"bool": False, "int": 0, "double": 0.0, "string": "", "list": [], "map": {}, "any": None}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CEL_RESERVED = {"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function",
                 "if", "import", "let", "loop", "package", "namespace", "return", "var", "void", "while"}
_COMPREHENSION_VAR = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")
_CEL_STRING = re.compile(r'''[rR]?(?:"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')''')
_CEL_NUMBER = re.compile(r"(?<![\w.])(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?(?![\w.])")

_FILE_KEYS = {"policy_id", "version", "kind", "description", "constants", "rules", "tests"}
_RULE_KEYS = {"inputs", "returns", "expr", "cases", "default", "description"}
_CASE_KEYS = {"name", "when", "then", "description"}
_TEST_KEYS = {"rule", "input", "expect", "name"}


class PolicyError(ValueError):
    """A policy that cannot be loaded or evaluated; the message names the file, the line and the rule."""


class PolicyEvalError(PolicyError):
    """A rule that failed at run time on a real input (a bug the table did not catch)."""


# ---------------------------------------------------------------------------------------------
# functions available to every rule


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _re_find(text: str, pattern: str) -> bool:
    if not isinstance(text, str) or not isinstance(pattern, str):
        raise TypeError(f"re_find(string, string) called with ({type(text).__name__}, {type(pattern).__name__})")
    return _regex(pattern).search(text) is not None


FUNCTIONS = {"re_find": _re_find}


# ---------------------------------------------------------------------------------------------
# YAML with line numbers and without silent duplicate keys


class _LineDict(dict):
    """A mapping that remembers the 1-based line of itself and of each key."""

    line: int = 0
    key_lines: dict[Any, int]


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    loader.flatten_mapping(node)
    out = _LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {out.key_lines[key]})", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line(m: Any, key: Any | None = None) -> int:
    if isinstance(m, _LineDict):
        if key is not None and key in m.key_lines:
            return m.key_lines[key]
        return m.line
    return 0


def plain(value: Any) -> Any:
    """Plain Python containers and scalars (what CEL converts), from YAML or numpy values."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_bytes(path: Path) -> bytes:
    """The file's bytes, read once: what is parsed and what is hashed must be the same bytes."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read: {exc}") from exc


def read_yaml(path: Path, data: bytes | None = None) -> Any:
    """Parse a YAML file (or its bytes `data`, already read) keeping line numbers; a syntax error names the
    file and line."""
    if data is None:
        data = read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: not UTF-8 text: {exc}") from exc
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise PolicyError(f"{path}:{line}: YAML parse error: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: YAML parse error: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# types


def coerce(value: Any, typ: str) -> Any:
    """`value` as the Python value CEL should see for a declared input type; TypeError otherwise."""
    if isinstance(value, np.generic):
        value = value.item()
    if typ == "any":
        return plain(value)
    if typ == "double" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if typ == "int" and isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if typ == "bool" and isinstance(value, bool):
        return value
    if typ == "string" and isinstance(value, str):
        return value
    if typ == "list" and isinstance(value, (list, tuple)):
        return plain(value)
    if typ == "map" and isinstance(value, Mapping):
        return plain(value)
    raise TypeError(f"expected {typ}, got {type(value).__name__} {value!r}")


def has_type(value: Any, typ: str) -> bool:
    """Whether a CEL result has the declared return type."""
    if typ == "any":
        return True
    if typ == "bool":
        return isinstance(value, bool)
    if typ == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if typ == "double":
        return isinstance(value, float)
    if typ == "string":
        return isinstance(value, str)
    if typ == "list":
        return isinstance(value, list)
    if typ == "map":
        return isinstance(value, dict)
    return False


def same_value(got: Any, expect: Any) -> bool:
    """Table comparison: lists compare as multisets (CEL map iteration has no order), doubles to 1e-12."""
    if isinstance(expect, list) and isinstance(got, list):
        return sorted(map(repr, got)) == sorted(map(repr, expect))
    if isinstance(expect, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return got == expect or (math.isfinite(expect) and abs(got - expect) <= 1e-12 * max(1.0, abs(expect)))
    return type(got) is type(expect) and got == expect


# ---------------------------------------------------------------------------------------------
# the objects


@dataclass(frozen=True)
class Case:
    """One case of a rule: a CEL `when` condition and the `then` value it returns."""

    name: str
    when: str
    then: Any
    line: int
    program: cel.Program = field(repr=False, compare=False)


@dataclass(frozen=True)
class Rule:
    """One named rule: typed inputs, a return type, and a CEL expression or an ordered list of cases."""

    name: str
    inputs: Mapping[str, str]
    returns: str
    line: int
    expr: str | None = None
    program: cel.Program | None = field(default=None, repr=False, compare=False)
    cases: tuple[Case, ...] = ()
    default: Any = None

    @property
    def sources(self) -> list[tuple[str, str, int]]:
        """(label, CEL source, line) for every expression of the rule."""
        if self.program is not None:
            return [(self.name, self.expr or "", self.line)]
        return [(f"{self.name}.{c.name}", c.when, c.line) for c in self.cases]

    def run(self, ctx: Any) -> tuple[Any, str | None]:
        """(result, name of the case that matched or None) for a prepared CEL context."""
        if self.program is not None:
            return self.program.execute(ctx), None
        for case in self.cases:
            hit = case.program.execute(ctx)
            if not isinstance(hit, bool):
                raise TypeError(f"case '{case.name}': `when` returned {type(hit).__name__}, not bool")
            if hit:
                return case.then, case.name
        return self.default, None


@dataclass(frozen=True)
class TableRow:
    """One row of a policy's table test: a rule's inputs and the expected outcome."""

    rule: str
    inputs: Mapping[str, Any]
    expect: Any
    name: str
    line: int


@dataclass(frozen=True)
class TableFailure:
    """One row of a policy's table whose outcome differs from the expectation."""

    path: str
    line: int
    policy: str
    rule: str
    name: str
    inputs: Mapping[str, Any]
    expect: Any
    got: Any

    def __str__(self) -> str:
        return (f"{self.path}:{self.line}: {self.policy} rule '{self.rule}' test '{self.name}': "
                f"input {dict(self.inputs)} expected {self.expect!r}, got {self.got!r}")


class Policy:
    """One loaded, checked policy file. Immutable after load; evaluation is thread-safe."""

    def __init__(self, *, path: Path, policy_id: str, version: str, kind: str, description: str,
                 constants: Mapping[str, Any], rules: Mapping[str, Rule], tests: tuple[TableRow, ...],
                 digest: str, constant_lines: Mapping[str, int]) -> None:
        self.path = path
        self.policy_id = policy_id
        self.version = version
        self.kind = kind
        self.description = description
        self.constants = dict(constants)
        self.rules = dict(rules)
        self.tests = tests
        self.digest = digest
        self.constant_lines = dict(constant_lines)
        self._local = threading.local()

    @property
    def label(self) -> str:
        """`policy_id@version`."""
        return f"{self.policy_id}@{self.version}"

    def __repr__(self) -> str:
        return f"Policy({self.label}, kind={self.kind}, path={self.path})"

    def _context(self) -> cel.Context:
        # one CEL context per thread with the constants converted once; every call overwrites
        # all of the rule's declared inputs, so no value leaks from one call to the next
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = cel.Context(dict(self.constants), FUNCTIONS)
            self._local.ctx = ctx
        return ctx

    def where(self, rule: str) -> str:
        """`path:line: label rule 'name'`, where a rule is defined, for error messages."""
        r = self.rules.get(rule)
        return f"{self.path}:{r.line if r else 0}: {self.label} rule '{rule}'"

    def explain(self, rule: str, /, **inputs: Any) -> tuple[Any, str | None]:
        """(result, matching case) of `rule` on `inputs`; PolicyEvalError names file/line/rule on failure."""
        r = self.rules.get(rule)
        if r is None:
            raise PolicyError(f"{self.path}: {self.label} has no rule '{rule}'")
        if set(inputs) != set(r.inputs):
            raise PolicyEvalError(f"{self.where(rule)}: inputs {sorted(inputs)} != declared {sorted(r.inputs)}")
        try:
            values = {k: coerce(v, r.inputs[k]) for k, v in inputs.items()}
        except TypeError as exc:
            raise PolicyEvalError(f"{self.where(rule)}: bad input: {exc}") from exc
        ctx = self._context()
        ctx.update(values)
        try:
            value, case = r.run(ctx)
        except Exception as exc:  # noqa: BLE001 - every CEL failure becomes a named policy error
            raise PolicyEvalError(f"{self.where(rule)}: failed on input {values}: {exc}") from exc
        if not has_type(value, r.returns):
            raise PolicyEvalError(f"{self.where(rule)}: returned {type(value).__name__} {value!r}, "
                                  f"declared {r.returns}")
        return value, case

    def evaluate(self, rule: str, /, **inputs: Any) -> Any:
        """The result of `rule` on `inputs`."""
        return self.explain(rule, **inputs)[0]


# ---------------------------------------------------------------------------------------------
# loading


def comprehension_vars(src: str) -> set[str]:
    """Names bound by CEL comprehension macros (`xs.exists(x, ...)`), which `variables()` also lists."""
    return set(_COMPREHENSION_VAR.findall(_CEL_STRING.sub("''", src)))


def numeric_literals(src: str) -> set[float]:
    """Numeric literals of a CEL expression (outside string literals), with both signs."""
    out: set[float] = set()
    for tok in _CEL_NUMBER.findall(_CEL_STRING.sub("''", src)):
        v = float(tok)
        out.update((v, -v))
    return out


def _fail(path: Path, line: int, what: str, msg: str) -> PolicyError:
    return PolicyError(f"{path}:{line}: {what}: {msg}")


def _check_ident(path: Path, line: int, what: str, name: Any) -> str:
    if not isinstance(name, str) or not _IDENT.match(name) or name in _CEL_RESERVED or keyword.iskeyword(name):
        raise _fail(path, line, what, f"{name!r} is not a valid identifier")
    return name


def _compile(path: Path, line: int, what: str, src: Any) -> cel.Program:
    if not isinstance(src, str) or not src.strip():
        raise _fail(path, line, what, "CEL expression must be a non-empty string")
    try:
        return cel.compile(src)
    except Exception as exc:  # noqa: BLE001 - the cel package raises ValueError; be safe
        raise _fail(path, line, what, f"CEL parse error: {exc}") from exc


def _parse_rule(path: Path, label: str, name: Any, spec: Any, line: int,
                constants: Mapping[str, Any]) -> Rule:
    what = f"{label} rule '{name}'"
    _check_ident(path, line, f"{label} rule", name)
    if not isinstance(spec, Mapping):
        raise _fail(path, line, what, "a rule is a mapping with inputs, returns and expr or cases")
    unknown = set(spec) - _RULE_KEYS
    if unknown:
        raise _fail(path, _line(spec, sorted(unknown)[0]), what, f"unknown key(s) {sorted(unknown)}")
    inputs = spec.get("inputs", None)
    if not isinstance(inputs, Mapping):
        raise _fail(path, _line(spec, "inputs"), what, "`inputs` must map each input name to a type")
    for var, typ in inputs.items():
        _check_ident(path, _line(inputs, var), f"{what} input", var)
        if typ not in TYPES:
            raise _fail(path, _line(inputs, var), what, f"input {var!r} has unknown type {typ!r} (one of {TYPES})")
        if var in constants:
            raise _fail(path, _line(inputs, var), what, f"input {var!r} shadows a constant")
    returns = spec.get("returns")
    if returns not in TYPES:
        raise _fail(path, _line(spec, "returns"), what, f"`returns` must be one of {TYPES}, got {returns!r}")
    has_expr, has_cases = "expr" in spec, "cases" in spec
    if has_expr == has_cases:
        raise _fail(path, line, what, "give exactly one of `expr` or `cases`")
    allowed = set(inputs) | set(constants)

    def check_vars(prog: cel.Program, src: str, at: int, sub: str) -> None:
        unknown_vars = set(prog.variables()) - allowed - comprehension_vars(src)
        if unknown_vars:
            raise _fail(path, at, sub, f"unknown variable(s) {sorted(unknown_vars)}; allowed: inputs "
                        f"{sorted(inputs)} and constants {sorted(constants)}")

    if has_expr:
        if "default" in spec:
            raise _fail(path, _line(spec, "default"), what, "`default` belongs to `cases`")
        at = _line(spec, "expr")
        prog = _compile(path, at, what, spec["expr"])
        check_vars(prog, spec["expr"], at, what)
        return Rule(name=name, inputs=dict(inputs), returns=returns, line=at, expr=spec["expr"], program=prog)

    cases_raw = spec["cases"]
    if not isinstance(cases_raw, list) or not cases_raw:
        raise _fail(path, _line(spec, "cases"), what, "`cases` must be a non-empty list")
    if "default" not in spec:
        raise _fail(path, _line(spec, "cases"), what, "`cases` needs a `default`")
    default = plain(spec["default"])
    if not has_type(default, returns):
        raise _fail(path, _line(spec, "default"), what, f"`default` {default!r} is not a {returns}")
    cases: list[Case] = []
    seen: set[str] = set()
    for c in cases_raw:
        cl = _line(c)
        if not isinstance(c, Mapping) or not {"name", "when", "then"} <= set(c) or set(c) - _CASE_KEYS:
            raise _fail(path, cl or _line(spec, "cases"), what, "each case is {name, when, then}")
        cname = _check_ident(path, cl, f"{what} case", c["name"])
        if cname in seen:
            raise _fail(path, cl, what, f"duplicate case name {cname!r}")
        seen.add(cname)
        sub = f"{label} rule '{name}.{cname}'"
        at = _line(c, "when")
        prog = _compile(path, at, sub, c["when"])
        check_vars(prog, c["when"], at, sub)
        then = plain(c["then"])
        if not has_type(then, returns):
            raise _fail(path, _line(c, "then"), sub, f"`then` {then!r} is not a {returns}")
        cases.append(Case(name=cname, when=c["when"], then=then, line=at, program=prog))
    return Rule(name=name, inputs=dict(inputs), returns=returns, line=_line(spec, "cases"),
                cases=tuple(cases), default=default)


def _parse_tests(path: Path, label: str, raw: Any, line: int, rules: Mapping[str, Rule]) -> tuple[TableRow, ...]:
    if not isinstance(raw, list) or not raw:
        raise _fail(path, line, label, "`tests` must be a non-empty list of {rule, input, expect}")
    rows: list[TableRow] = []
    for i, t in enumerate(raw):
        tl = _line(t) or line
        if not isinstance(t, Mapping) or not {"rule", "input", "expect"} <= set(t) or set(t) - _TEST_KEYS:
            raise _fail(path, tl, f"{label} test #{i + 1}", "each test is {rule, input, expect[, name]}")
        rule = rules.get(t["rule"])
        what = f"{label} rule '{t['rule']}' test #{i + 1}"
        if rule is None:
            raise _fail(path, tl, what, "no such rule")
        given = t["input"]
        if not isinstance(given, Mapping) or set(given) != set(rule.inputs):
            got = sorted(given) if isinstance(given, Mapping) else given
            raise _fail(path, tl, what, f"input keys {got} != declared inputs {sorted(rule.inputs)}")
        try:
            inputs = {k: coerce(v, rule.inputs[k]) for k, v in given.items()}
        except TypeError as exc:
            raise _fail(path, tl, what, f"bad input: {exc}") from exc
        expect = plain(t["expect"])
        if rule.returns == "double" and isinstance(expect, int) and not isinstance(expect, bool):
            expect = float(expect)
        if not has_type(expect, rule.returns):
            raise _fail(path, tl, what, f"`expect` {expect!r} is not a {rule.returns}")
        rows.append(TableRow(rule=rule.name, inputs=inputs, expect=expect,
                             name=str(t.get("name") or f"#{i + 1}"), line=tl))
    missing = set(rules) - {r.rule for r in rows}
    if missing:
        first = min(missing, key=lambda n: rules[n].line)
        raise _fail(path, rules[first].line, f"{label} rule '{first}'", "has no row in the `tests` table")
    return tuple(rows)


def _type_check(path: Path, label: str, rule: Rule, constants: Mapping[str, Any],
                samples: list[dict[str, Any]]) -> None:
    """Evaluate every expression of `rule` on every sample; refuse on a CEL error or a wrong result type."""
    ctx = cel.Context(dict(constants), FUNCTIONS)
    for sample in samples:
        ctx.update(sample)
        if rule.program is not None:
            try:
                value = rule.program.execute(ctx)
            except Exception as exc:  # noqa: BLE001
                raise _fail(path, rule.line, f"{label} rule '{rule.name}'",
                            f"error on sample input {sample}: {type(exc).__name__}: {exc}") from exc
            if not has_type(value, rule.returns):
                raise _fail(path, rule.line, f"{label} rule '{rule.name}'",
                            f"type error on sample input {sample}: returned {type(value).__name__} "
                            f"{value!r}, declared {rule.returns}")
            continue
        for case in rule.cases:  # every case, not only up to the first match
            try:
                hit = case.program.execute(ctx)
            except Exception as exc:  # noqa: BLE001
                raise _fail(path, case.line, f"{label} rule '{rule.name}.{case.name}'",
                            f"error on sample input {sample}: {type(exc).__name__}: {exc}") from exc
            if not isinstance(hit, bool):
                raise _fail(path, case.line, f"{label} rule '{rule.name}.{case.name}'",
                            f"type error on sample input {sample}: `when` returned {type(hit).__name__}, not bool")


def load_policy_file(path: Path) -> Policy:
    """Parse and check one policy file; PolicyError (file, line, rule) if anything is wrong."""
    path = Path(path)
    data = read_bytes(path)
    raw = read_yaml(path, data)
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{path}:1: a policy file is a YAML mapping")
    unknown = set(raw) - _FILE_KEYS
    if unknown:
        k = sorted(unknown, key=str)[0]
        raise _fail(path, _line(raw, k), "policy", f"unknown key {k!r} (allowed: {sorted(_FILE_KEYS)})")
    for key in ("policy_id", "version", "kind", "rules", "tests"):
        if key not in raw:
            raise _fail(path, _line(raw), "policy", f"missing `{key}`")
    for key in ("policy_id", "version", "kind"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise _fail(path, _line(raw, key), "policy", f"`{key}` must be a non-empty (quoted) string")
    label = f"{raw['policy_id']}@{raw['version']}"
    constants_raw = raw.get("constants") or {}
    if not isinstance(constants_raw, Mapping):
        raise _fail(path, _line(raw, "constants"), label, "`constants` must be a mapping")
    for name in constants_raw:
        _check_ident(path, _line(constants_raw, name), f"{label} constant", name)
    constants = {k: plain(v) for k, v in constants_raw.items()}
    constant_lines = {k: _line(constants_raw, k) for k in constants_raw}
    rules_raw = raw["rules"]
    if not isinstance(rules_raw, Mapping) or not rules_raw:
        raise _fail(path, _line(raw, "rules"), label, "`rules` must be a non-empty mapping")
    rules = {name: _parse_rule(path, label, name, spec, _line(rules_raw, name), constants)
             for name, spec in rules_raw.items()}
    tests = _parse_tests(path, label, raw["tests"], _line(raw, "tests"), rules)
    for rule in rules.values():
        samples = [{k: _SAMPLES[t] for k, t in rule.inputs.items()}]
        samples += [dict(row.inputs) for row in tests if row.rule == rule.name]
        _type_check(path, label, rule, constants, samples)
    return Policy(path=path, policy_id=raw["policy_id"], version=raw["version"], kind=raw["kind"],
                  description=str(raw.get("description") or ""), constants=constants, rules=rules,
                  tests=tests, digest=hashlib.sha256(data).hexdigest(),
                  constant_lines=constant_lines)


def run_table(policy: Policy) -> list[TableFailure]:
    """Run the policy's own table: every row whose outcome differs (or raises) is a failure."""
    failures: list[TableFailure] = []
    for row in policy.tests:
        try:
            got: Any = policy.evaluate(row.rule, **row.inputs)
        except PolicyError as exc:
            got = f"<error: {exc}>"
        if not same_value(got, row.expect):
            failures.append(TableFailure(path=str(policy.path), line=row.line, policy=policy.label,
                                         rule=row.rule, name=row.name, inputs=row.inputs,
                                         expect=row.expect, got=got))
    return failures
