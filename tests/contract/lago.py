"""Lago's published OpenAPI document (1.51) as the hub's response contract.

The document is Lago's (AGPL-3.0) and is not kept in this repository: the workplace keeps such third-party data
only in the steering repository's shared/, which CI lays beside the clone. `document_path()` finds it there, or
where LAGO_OPENAPI names. Where the document is wrong about Lago itself, docs/lago-deviations.yaml patches it,
each exception once with its reason; everything else a response breaks is the hub's to fix.
"""
from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

REPO = Path(__file__).resolve().parents[2]
DOCUMENT_NAME = "lago-openapi-1.51.0.yaml"
DEVIATIONS = REPO / "docs" / "lago-deviations.yaml"
METHODS = ("get", "post", "put", "patch", "delete")
BASE = "/api/v1"
URI = "urn:lago-openapi-1.51.0"


def document_path() -> Path | None:
    """LAGO_OPENAPI, else shared/contracts/<name> beside the clone (CI) or beside /work/main (a worktree)."""
    named = os.environ.get("LAGO_OPENAPI")
    if named:
        return Path(named)
    for root in (REPO.parent, REPO.parent.parent):
        candidate = root / "shared" / "contracts" / DOCUMENT_NAME
        if candidate.is_file():
            return candidate
    return None


def deviations() -> dict:
    return yaml.safe_load(DEVIATIONS.read_text()) or {}


def _pointer(document: dict, pointer: str):
    node = document
    for part in pointer.lstrip("/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _allow_null(node: dict) -> None:
    if "$ref" in node or "allOf" in node or "oneOf" in node or "anyOf" in node:
        inner = {key: node.pop(key) for key in list(node) if key not in ("description", "example", "examples")}
        node["anyOf"] = [inner, {"type": "null"}]
        return
    kind = node.get("type")
    if isinstance(kind, list):
        if "null" not in kind:
            kind.append("null")
    elif kind is not None:
        node["type"] = [kind, "null"]
    if "enum" in node and None not in node["enum"]:
        node["enum"] = [*node["enum"], None]


def _openapi30_nullable(node) -> None:
    """OpenAPI 3.0's `nullable: true`, which a few of Lago's 3.1 schemas still use, read as it is meant."""
    if isinstance(node, dict):
        if node.pop("nullable", False) is True:
            _allow_null(node)
        for value in node.values():
            _openapi30_nullable(value)
    elif isinstance(node, list):
        for value in node:
            _openapi30_nullable(value)


def apply_schema_exceptions(document: dict, exceptions: list[dict]) -> None:
    """Each recorded exception: `allow_null` (Lago sends null there), `drop` (keywords Lago does not keep to),
    `not_required` (properties Lago omits), `wrap` (the root key Lago answers the object under), `ref` (the
    component Lago's answer really is)."""
    for exception in exceptions:
        node = _pointer(document, exception["pointer"])
        if exception.get("ref"):
            node.clear()
            node["$ref"] = exception["ref"]
        if exception.get("allow_null"):
            _allow_null(node)
        for keyword in exception.get("drop", []):
            node.pop(keyword, None)
        for name in exception.get("not_required", []):
            if name in node.get("required", []):
                node["required"].remove(name)
        if exception.get("wrap"):  # Lago answers the declared object under a root key the document leaves out
            inner = dict(node)
            node.clear()
            node.update({"type": "object", "required": [exception["wrap"]],
                         "properties": {exception["wrap"]: inner}})


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # Lago's template, "/customers/{external_customer_id}"
    operation_id: str
    pattern: re.Pattern

    @property
    def key(self) -> str:
        return f"{self.method.upper()} {self.path}"


class Contract:
    def __init__(self, path: Path):
        self.path = path
        raw = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        self.version = raw["info"]["version"]
        self.raw = raw
        document = copy.deepcopy(raw)
        _openapi30_nullable(document)
        apply_schema_exceptions(document, deviations().get("schema_exceptions", []))
        self.document = document
        self.registry = Registry().with_resource(URI, Resource(contents=document, specification=DRAFT202012))
        self.operations: list[Operation] = []
        for template, item in raw["paths"].items():
            regex = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            for method in METHODS:
                if method in item:
                    self.operations.append(Operation(method, template, item[method].get("operationId", ""),
                                                     re.compile(f"^{regex}$")))
        # A fixed segment wins over a parameter: /events/estimate_fees before /events/{transaction_id}.
        self.operations.sort(key=lambda op: (op.path.count("{"), -len(op.path)))
        self._validators: dict[str, Draft202012Validator] = {}

    def operation(self, method: str, path: str) -> Operation | None:
        if not path.startswith(BASE + "/"):
            return None
        tail = path[len(BASE):]
        for op in self.operations:
            if op.method == method.lower() and op.pattern.match(tail):
                return op
        return None

    def _response_pointer(self, op: Operation, status: int) -> str | None:
        escaped = op.path.replace("~", "~0").replace("/", "~1")
        responses = self.document["paths"][op.path][op.method].get("responses", {})
        response = responses.get(str(status))
        base = f"/paths/{escaped}/{op.method}/responses/{status}"
        if response is None:
            return None
        if "$ref" in response:  # #/components/responses/NotFound
            base = response["$ref"].removeprefix("#")
            response = _pointer(self.document, base)
        if "application/json" not in response.get("content", {}):
            return None
        return f"{base}/content/application~1json/schema"

    def errors(self, method: str, path: str, status: int, body) -> tuple[Operation | None, list[str]]:
        """Where `body` breaks the schema Lago declares for (method, path, status); none if it declares none."""
        op = self.operation(method, path)
        if op is None:
            return None, []
        pointer = self._response_pointer(op, status)
        if pointer is None:
            return op, []
        validator = self._validators.get(pointer)
        if validator is None:
            validator = Draft202012Validator({"$ref": f"{URI}#{pointer}"}, registry=self.registry)
            self._validators[pointer] = validator
        found = []
        for error in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
            where = "/".join(str(p) for p in error.absolute_path) or "(body)"
            found.append(f"{where}: {error.message[:300]}")
        return op, found


@cache
def contract() -> Contract | None:
    path = document_path()
    return Contract(path) if path is not None and path.is_file() else None


def json_body(response):
    if "json" not in response.get("Content-Type", ""):
        return None
    try:
        return json.loads(response.content)
    except (ValueError, AttributeError):
        return None
