"""What each config field is, for `scratchlab show NAME` and `run NAME --help`: read from the dataclass itself.

The meaning of a field is written once, beside it in the config dataclass, and read back from the source:

    steps: PositiveInt = 3000  # rounds: d_steps discriminator updates + g_steps generator updates each

in order of preference: the comment at the end of the field's line(s); a string literal right below the field (an
attribute docstring); the comment lines right above it; a `name: meaning` line of the class docstring. A subclass
that redefines a field without saying more keeps its base class's meaning. The type comes from the annotation
(`Annotated[int, Range(ge=1)]` reads "int >= 1", a Literal lists its choices), the default from an instance, and the
`--quick` value from the experiment's quick overrides where it differs.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import re
import shutil
import textwrap
import tokenize
import types
import typing
from typing import Annotated, Any

from scratchlab.run import config as C


@dataclasses.dataclass(frozen=True)
class FieldDoc:
    key: str                # dotted: base.steps
    type: str               # "int >= 1", "{lstm,gru,rnn}", "float > 0 or none", "list of str"
    default: str            # as written after --set key=
    quick: str | None       # the --quick value where it differs from the default
    meaning: str            # "" when the source says nothing


def describe(cfg: Any, quick: dict[str, Any] | None = None) -> list[FieldDoc]:
    """One FieldDoc per leaf field of the config instance `cfg` (nested sections dotted), in declaration order;
    `quick`: the experiment's `--quick` overrides."""
    fast = C.apply_overrides(cfg, quick) if quick else cfg
    fast_values = {key: value for key, value, _ in C._fields(fast)}
    docs = []
    for key, value, hint in C._fields(cfg):
        owner, name = _owner(cfg, key)
        q = fast_values[key]
        docs.append(FieldDoc(key, type_text(hint), _value_text(value), None if q == value else _value_text(q),
                             meaning(type(owner), name)))
    return docs


def _owner(cfg: Any, key: str) -> tuple[Any, str]:
    *path, name = key.split(".")
    for part in path:
        cfg = getattr(cfg, part)
    return cfg, name


def type_text(hint: Any) -> str:
    """A type as a reader wants it: 'int >= 1', 'float in [0, 1)', '{adam,rmsprop} or none', 'list of int >= 1'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        base, *extras = args
        bounds = [b.describe(base is int) for b in extras if isinstance(b, C.Range)]
        return " ".join([type_text(base), *bounds])
    if origin in (typing.Union, types.UnionType):
        parts = [type_text(a) for a in args if a is not type(None)]
        return " | ".join(parts) + (" or none" if type(None) in args else "")
    if origin is typing.Literal:
        return "{" + ",".join(str(a) for a in args) + "}"
    if origin in (tuple, list):
        return f"list of {type_text(args[0]) if args else 'str'}"
    return getattr(hint, "__name__", str(hint))


def _value_text(value: Any, limit: int = 20) -> str:
    text = C._show(value)
    if isinstance(value, str) and (text == "" or " " in text):
        text = repr(value)
    elif isinstance(value, tuple | list) and not value:
        text = "()"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def meaning(cls: type, name: str) -> str:
    """The meaning of field `name` of dataclass `cls`, from the source of the first class in its MRO that says
    one; "" when none does (or the source cannot be read)."""
    for klass in cls.__mro__:
        if name in vars(klass).get("__annotations__", {}):
            text = _meanings(klass).get(name, "")
            if text:
                return text
    return ""


@functools.cache
def _meanings(cls: type) -> dict[str, str]:
    """{field name: meaning} from the class's own source."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):  # defined in a REPL, exec, or a compiled module
        return {}
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    comments: dict[int, tuple[str, bool]] = {}  # line -> (comment text, alone on its line)
    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            alone = not lines[tok.start[0] - 1][:tok.start[1]].strip()
            comments[tok.start[0]] = (tok.string.lstrip("#").strip(), alone)
    found = _from_docstring(ast.get_docstring(node) or "")
    body = node.body
    for i, stmt in enumerate(body):
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        trailing = [comments[n][0] for n in range(stmt.lineno, stmt.end_lineno + 1)
                    if n in comments and not comments[n][1]]
        after = body[i + 1] if i + 1 < len(body) else None
        docstring = (after.value.value.strip().split("\n\n")[0] if isinstance(after, ast.Expr)
                     and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str) else "")
        above, n = [], stmt.lineno - 1
        while n in comments and comments[n][1]:
            above.insert(0, comments[n][0])
            n -= 1
        text = " ".join(trailing) or " ".join(docstring.split()) or " ".join(above)
        if text:
            found[stmt.target.id] = text
    return found


def _from_docstring(doc: str) -> dict[str, str]:
    """`name: meaning` (or `` `name`: meaning ``) lines of a class docstring."""
    found = {}
    for line in doc.splitlines():
        m = re.match(r"\s*`?([A-Za-z_]\w*)`?\s*:\s+(\S.*)", line)
        if m:
            found[m[1]] = m[2].strip()
    return found


def undocumented(cfg: Any) -> list[str]:
    """The dotted keys of `cfg` whose meaning the source does not give."""
    return [d.key for d in describe(cfg) if not d.meaning]


def table(docs: list[FieldDoc], width: int | None = None, indent: str = "  ") -> str:
    """The fields as an aligned table (KEY, TYPE, DEFAULT, QUICK), each meaning on the line below, wrapped."""
    width = width or shutil.get_terminal_size().columns
    rows = [("KEY", "TYPE", "DEFAULT", "QUICK")] + [(d.key, d.type, d.default, d.quick or "") for d in docs]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    out = []
    for i, row in enumerate(rows):
        cells = [c.ljust(w) for c, w in zip(row[:3], widths, strict=True)] + [row[3]]
        out.append((indent + "  ".join(cells)).rstrip())
        if i and docs[i - 1].meaning:
            out += textwrap.wrap(docs[i - 1].meaning, max(width, 40), initial_indent=indent + "    ",
                                 subsequent_indent=indent + "    ")
    return "\n".join(out)
