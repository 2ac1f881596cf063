"""Every comparison of a secret is constant-time: read from the source, so a new ``==`` fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Names that hold (or derive from) a secret: comparing them with == leaks, byte by byte, how much matched.
SECRETISH = re.compile(r"(secret|token|signature|password|digest|hash|api_?key|ticket|signed)", re.I)


def _names(node: ast.AST) -> list[str]:
    found = []
    for n in ast.walk(node):
        name = n.id if isinstance(n, ast.Name) else n.attr if isinstance(n, ast.Attribute) else None
        # UPPER_CASE names are constants (ErrorCode.TOKEN_EXPIRED), not secrets.
        if name is not None and not name.isupper():
            found.append(name)
    return found


def equality_on_secrets(source: str, filename: str) -> list[str]:
    offenders = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
            hits = [n for part in (node.left, *node.comparators) for n in _names(part) if SECRETISH.search(n)]
            if hits:
                offenders.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
    return offenders


def test_no_secret_is_compared_with_equality():
    offenders = []
    for package in ("server", "handlers"):
        for path in sorted((ROOT / package).rglob("*.py")):
            offenders += equality_on_secrets(path.read_text(), str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_check_finds_an_equality_on_a_secret():
    assert equality_on_secrets("ok = presented == api_key\n", "x.py") == ["x.py:1: presented == api_key"]
    assert equality_on_secrets("ok = signature != expected\n", "x.py")
    assert equality_on_secrets("ok = code == ErrorCode.TOKEN_EXPIRED\n", "x.py") == []


def test_the_secret_checks_use_compare_digest():
    for module in ("server/auth/apikeys.py", "server/cli/admin.py"):
        assert "hmac.compare_digest(" in (ROOT / module).read_text(), module
    # Token signatures are checked by itsdangerous, which compares with hmac.compare_digest.
    import inspect

    import itsdangerous.signer

    assert "compare_digest" in inspect.getsource(itsdangerous.signer)
