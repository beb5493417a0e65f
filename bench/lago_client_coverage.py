"""Which lago-python-client calls the hub answers, and which test drives each one through the client (issue 21).

    python bench/lago_client_coverage.py            # one row per client method: request, in Lago 1.51?, hub, tests
    python bench/lago_client_coverage.py --json     # the rows as one JSON object on the last line

Calls every public method of the installed client with placeholder arguments, catching the request it would send
(nothing leaves the process), then asks bench/lago_coverage.py's resolver whether the hub routes it, and Lago
1.51's OpenAPI document (LAGO_OPENAPI) whether Lago documents it. The "test" column lists the test modules that
call the method through a client (`<client>.<resource>.<method>(` in a module importing lago_python_client).
"""
from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


class _Captured(Exception):
    """The request a client method would have sent."""


def client_operations() -> list[tuple[str, str, str]]:
    """Return (client method, HTTP method, path template) for every public method of the installed client."""
    import httpx._api
    from lago_python_client.base_client import BaseClient
    from lago_python_client.base_model import BaseModel
    from lago_python_client.client import Client

    class Placeholder(BaseModel):
        x: str = "1"

    def capture(method, url, **_):
        raise _Captured(method, str(url))

    def unwrap(value):
        return value._obj if type(value).__name__ == "Proxy" else value  # callable_cached_property's wrapper

    def arguments(obj, name: str, method) -> list:
        signature = inspect.signature(method)
        parents = getattr(obj, "api_resource", None)
        if callable(parents) and any(p.kind == p.VAR_POSITIONAL for p in signature.parameters.values()):
            ids = ["{" + p + "}" for p in inspect.signature(parents).parameters]  # the Nested*CommandMixin calls
            return {"create": ids + [Placeholder()], "update": ids + ["{id}", Placeholder()],
                    "destroy": ids + ["{id}"], "find": ids + ["{id}"], "find_all": ids}[name]
        values = []
        for parameter in signature.parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if parameter.default is not inspect.Parameter.empty and not (
                    name == "update" and parameter.name == "identifier" and obj.API_RESOURCE != "organizations"):
                continue
            annotation = str(parameter.annotation)
            if parameter.name == "input_object" or "Model" in annotation or "List" in annotation:
                values.append(Placeholder())
            elif "Dict" in annotation or "dict" in annotation:
                values.append({"k": "v"})
            else:
                values.append("{" + parameter.name + "}")
        return values

    rows = []

    def walk(prefix: str, obj, seen: set) -> None:
        for name in sorted(n for n in dir(type(obj)) if not n.startswith("_") and n.upper() != n):
            value = unwrap(getattr(obj, name))
            if isinstance(value, BaseClient):
                if id(value) not in seen:
                    seen.add(id(value))
                    walk(f"{prefix}.{name}", value, seen)
                continue
            if not callable(value) or name == "api_resource":
                continue
            try:
                value(*arguments(obj, name, value))
            except _Captured as sent:
                method, url = sent.args
                rows.append((f"{prefix}.{name}", method, "/" + url.split("/api/v1/", 1)[1].split("?")[0]))

    real, httpx._api.request = httpx._api.request, capture
    try:
        client, seen = Client(api_key="k", api_url="http://client.invalid/"), set()
        for name in sorted(n for n in dir(Client) if not n.startswith("_")):
            value = unwrap(getattr(client, name))
            if isinstance(value, BaseClient):
                seen.add(id(value))
                walk(name, value, seen)
    finally:
        httpx._api.request = real
    return rows


def client_tests() -> dict[str, list[str]]:
    """Map `resource.method` call chains to the test modules that make them through lago_python_client."""
    calls: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        text = path.read_text()
        if "lago_python_client" not in text:
            continue
        for chain in set(re.findall(r"(?:(?<![\w.])\w+|\))((?:\.\w+)+)\(", text)):
            calls.setdefault(chain.lstrip("."), []).append(str(path.relative_to(ROOT)))
    return calls


def coverage() -> list[dict]:
    from lago_coverage import _setup_django, routed

    _setup_django()
    from tests.contract import lago

    contract = lago.contract()
    if contract is None:
        raise SystemExit("Lago's openapi.yaml (1.51.0) not found: set LAGO_OPENAPI (see tests/contract/README.md)")
    absent = {item["operation"] for item in lago.deviations().get("absent_operations", [])}
    tests = client_tests()
    rows = []
    for call, method, template in client_operations():
        operation = contract.operation(method, lago.BASE + re.sub(r"\{[^}]+\}", "x", template))
        key = operation.key if operation else None
        hub = "routed" if routed(method.lower(), template) else ("absent" if key in absent else "not routed")
        rows.append({"call": call, "request": f"{method} {template}", "lago_1_51": key is not None,
                     "hub": hub, "tests": sorted(set(tests.get(call, [])))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = coverage()
    if args.json:
        print(json.dumps({"rows": rows}))
        return
    print(f"{'client call':<40} {'request':<84} {'1.51':<4} {'hub':<10} tests through the client")
    for row in rows:
        tests = ", ".join(Path(t).stem.removeprefix("test_") for t in row["tests"]) or "-"
        print(f"{row['call']:<40} {row['request']:<84} {'yes' if row['lago_1_51'] else 'no':<4} {row['hub']:<10} {tests}")
    routed = [row for row in rows if row["hub"] == "routed"]
    print(f"\n{len(rows)} client calls: {len(routed)} routed ({sum(1 for row in routed if row['tests'])} with a client "
          f"test), {sum(1 for row in rows if row['hub'] == 'absent')} deliberately absent, "
          f"{sum(1 for row in rows if row['hub'] == 'not routed')} not routed "
          f"({sum(1 for row in rows if row['hub'] == 'not routed' and row['lago_1_51'])} of them in Lago 1.51)")


if __name__ == "__main__":
    main()
