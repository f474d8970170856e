"""`make lint`'s dead-code check: vulture, configured in pyproject.toml ([tool.vulture]).

One rule is added to vulture's own: the annotated names in a class body (the fields of pydantic
models, settings, contracts and dataclasses) are not reported. Pydantic and the serialisers read
them, never code by name, so vulture would report most wire fields; they are the API's shape,
not dead code. Everything else vulture finds fails the check: functions, methods and classes
nobody uses, module-level names nobody reads, attributes set and never read, unreachable code.
A true false positive (a callback a framework calls by name) goes in tools/vulture_whitelist.py.
"""

from __future__ import annotations

import ast
import sys
from functools import cache

from vulture.config import make_config
from vulture.core import Vulture


@cache
def _field_lines(path: str) -> frozenset[int]:
    with open(path, encoding="utf-8") as source:
        tree = ast.parse(source.read(), path)
    return frozenset(
        statement.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        for statement in node.body
        if isinstance(statement, ast.AnnAssign)
    )


def main(argv: list[str]) -> int:
    config = make_config(argv)
    vulture = Vulture(ignore_names=config["ignore_names"], ignore_decorators=config["ignore_decorators"])
    vulture.scavenge(config["paths"], exclude=config["exclude"])
    unused = [
        item
        for item in vulture.get_unused_code(min_confidence=config["min_confidence"])
        if not (item.typ == "variable" and item.first_lineno in _field_lines(str(item.filename)))
    ]
    for item in unused:
        print(item.get_report())
    return 1 if unused else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
