"""The hub's OpenAPI document: complete (bearer scheme, Lago's bodies and errors on every operation), built
without a drf-spectacular warning, and browsable in a Swagger UI the hub serves itself."""
from __future__ import annotations

import pytest
import yaml
from django.contrib.staticfiles import finders
from django.core.management import call_command


@pytest.fixture(scope="module")
def document(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("openapi") / "schema.yaml"
    # --fail-on-warn: an unannotated view, a colliding component or an unresolvable body fails the suite.
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(path))
    return yaml.safe_load(path.read_text())


def _operations(document: dict):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation


def test_the_document_builds_without_warnings_and_covers_every_route(document):
    operations = {(path, method) for path, method, _ in _operations(document)}
    assert len(operations) >= 49
    assert ("/api/v1/events/batch", "post") in operations and ("/api/v1/usage", "post") in operations


# Lago's own bodies without a root key: voidInvoice's InvoiceVoidInput (generate_credit_note, credit_amount,
# refund_amount at the top level, every field optional).
UNROOTED_BODIES = {"voidInvoice"}


def test_every_operation_is_lago_shaped(document):
    schemas = document["components"]["schemas"]
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "The calling service's API key."}
    public = {"/api/v1/health", "/api/v1/invoices/{lago_id}/pdf/{token}", "/api/v1/credit_notes/{lago_id}/pdf/{token}"}
    for path, method, operation in _operations(document):
        where = f"{method.upper()} {path}"
        assert operation["operationId"][0].islower(), where
        if path in public:
            assert not any(operation.get("security", [{}])), where
        else:
            assert operation["security"] == [{"bearerAuth": []}], where
            assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/UnauthorizedError"}, where
        success = [code for code in operation["responses"] if code.startswith("2")]
        assert len(success) == 1, where
        if path == "/api/v1/usage":
            assert success == ["202"]
        empty_ok = ("retryPayment", "deleteAllSubscriptionAlerts", "deleteAllCustomerWalletAlerts")  # Lago's empty 200s
        if operation["operationId"] not in empty_ok:
            assert operation["responses"][success[0]]["content"], where
        assert "422" in operation["responses"], where  # a NUL byte in any query parameter
        if "{" in path:
            assert operation["responses"]["404"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/NotFoundError"}, where
        body = operation.get("requestBody")
        if method in ("post", "put") and body:
            assert body.get("required", False) is (operation["operationId"] not in UNROOTED_BODIES), where
            assert "413" in operation["responses"] and "400" in operation["responses"], where
            ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            if operation["operationId"] in UNROOTED_BODIES:
                assert "required" not in schemas[ref], where
                continue
            assert len(schemas[ref]["properties"]) == 1, f"{where}: a body is one root key, like Lago's"


def test_bodies_carry_lago_root_keys_and_list_parameters(document):
    schemas = document["components"]["schemas"]
    assert schemas["CustomerBody"]["required"] == ["customer"]
    assert schemas["EventBatchBody"]["properties"]["events"]["maxItems"] == 1000
    invoices = {p["name"] for p in document["paths"]["/api/v1/invoices"]["get"]["parameters"]}
    assert {"page", "per_page", "statuses[]", "currency", "amount_from", "issuing_date_from"} <= invoices
    listed = document["paths"]["/api/v1/customers"]["get"]["responses"]["200"]["content"]["application/json"]
    assert listed["schema"]["properties"]["meta"] == {"$ref": "#/components/schemas/PaginationMeta"}


def test_swagger_ui_is_served_by_the_hub_without_a_cdn(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower() and "unpkg" not in html.lower()
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    schema = client.get("/api/schema/")
    assert schema.status_code == 200 and b"bearerAuth" in schema.content
