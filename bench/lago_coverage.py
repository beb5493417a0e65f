"""How much of Lago 1.51's API the hub routes (issue 21).

    python bench/lago_coverage.py            # every Lago operation: routed / not routed / deliberately absent
    python bench/lago_coverage.py --json     # the same as one JSON object on the last line
    python bench/lago_coverage.py --missing  # only what is not routed

Reads Lago's published OpenAPI document (tests/contract/lago.py finds it: LAGO_OPENAPI, or shared/contracts/
beside the clone) and asks the hub's URL resolver, for each operation, which view answers its path and whether
that view has the method. "Deliberately absent" operations are those docs/lago-deviations.yaml lists under
`absent_operations`, with their reason. Nothing is served and no database is opened.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexabilling.settings")
    os.environ.setdefault("SECRET_KEY", "lago-coverage")  # settings need one; nothing is signed here
    os.environ.setdefault("DATABASE_URL", "postgres://coverage@127.0.0.1:1/none")  # never connected to
    import django

    django.setup()


def routed(method: str, template: str) -> str | None:
    """The view that answers `method template` under /api/v1, or None."""
    from django.urls import Resolver404, resolve

    path = "/api/v1" + re.sub(r"\{[^}]+\}", "x", template)
    try:
        match = resolve(path)
    except Resolver404:
        return None
    view = getattr(match.func, "view_class", None) or getattr(match.func, "cls", None)
    if view is None or not hasattr(view, method):
        return None
    return f"{view.__module__}.{view.__name__}"


def coverage() -> dict:
    from tests.contract import lago

    contract = lago.contract()
    if contract is None:
        raise SystemExit("Lago's openapi.yaml (1.51.0) not found: set LAGO_OPENAPI (see tests/contract/README.md)")
    absent = {item["operation"]: item["reason"] for item in lago.deviations().get("absent_operations", [])}
    rows = []
    for op in sorted(contract.operations, key=lambda op: (op.path, op.method)):
        view = routed(op.method, op.path)
        status = "routed" if view else ("absent" if op.key in absent else "not_routed")
        rows.append({"operation": op.key, "operation_id": op.operation_id, "status": status, "view": view,
                     "reason": absent.get(op.key) if status == "absent" else None})
    counts = {name: sum(1 for row in rows if row["status"] == name) for name in ("routed", "absent", "not_routed")}
    return {"lago_version": contract.version, "operations": len(rows), **counts, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="the figures and rows as one JSON object on the last line")
    parser.add_argument("--missing", action="store_true", help="list only the operations that are not routed")
    args = parser.parse_args()
    _setup_django()
    result = coverage()
    if args.json:
        print(json.dumps(result))
        return
    for row in result["rows"]:
        if args.missing and row["status"] == "routed":
            continue
        note = f"  ({row['reason']})" if row["reason"] else ""
        print(f"{row['status']:<11} {row['operation']:<70} {row['operation_id']}{note}")
    total = result["operations"]
    print(f"\nLago {result['lago_version']}: {result['routed']} of {total} operations routed "
          f"({100 * result['routed'] / total:.0f} %), {result['absent']} deliberately absent, "
          f"{result['not_routed']} not routed")


if __name__ == "__main__":
    main()
