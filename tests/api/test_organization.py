"""The organization and its one billing entity (issue 21): Lago's PUT /organizations and /billing_entities, for a hub
that bills as one company (Nexa Systems Inc., Ontario)."""
from __future__ import annotations

import pytest
from django.test import override_settings

from apps.audit.models import OrganizationEvent
from apps.customers.models import Organization

pytestmark = pytest.mark.django_db

# Seeded from settings by migration customers 0003 (NEXA_LEGAL_NAME, NEXA_ADDRESS, NEXA_HST_NUMBER).
SEEDED = {"name": "Nexa Systems Inc.", "address_line1": "100 King Street West", "address_line2": None,
          "city": "Toronto", "state": "ON", "zipcode": "M5X 1A9", "country": "CA", "email": None,
          "legal_name": "Nexa Systems Inc.", "legal_number": None, "tax_identification_number": "123456789 RT0001"}
ALLOWED = override_settings(ORGANIZATION_API_SERVICES=["nexacloud"])


def test_the_hub_is_one_billing_entity(cloud):
    listed = cloud.get("/api/v1/billing_entities")
    assert listed.status_code == 200
    (entity,) = listed.json()["billing_entities"]
    assert {key: entity[key] for key in SEEDED} == SEEDED
    assert (entity["code"], entity["is_default"], entity["default_currency"], entity["timezone"],
            entity["document_numbering"], entity["document_number_prefix"], entity["invoice_footer"]) == (
        "nexa_systems", True, "CAD", "America/Toronto", "per_billing_entity", "NEXA", None)
    one = cloud.get("/api/v1/billing_entities/nexa_systems")
    assert one.json()["billing_entity"] == {**entity, "taxes": [], "selected_invoice_custom_sections": []}
    missing = cloud.get("/api/v1/billing_entities/acme_corp")
    assert (missing.status_code, missing.json()) == (
        404, {"status": 404, "error": "Not Found", "code": "billing_entity_not_found"})


def test_a_second_entity_is_refused_as_lago_refuses_it(cloud):
    response = cloud.post("/api/v1/billing_entities", {"billing_entity": {"code": "acme_us", "name": "Acme US"}},
                          format="json")
    assert (response.status_code, response.json()) == (
        403, {"status": 403, "error": "Forbidden", "code": "feature_unavailable"})
    assert cloud.post("/api/v1/billing_entities", {}, format="json").status_code == 400
    assert len(cloud.get("/api/v1/billing_entities").json()["billing_entities"]) == 1


def test_only_the_named_services_change_the_organization(cloud, desk):
    body = {"organization": {"billing_configuration": {"invoice_footer": "Merci!"}}}
    refused = cloud.put("/api/v1/organizations", body, format="json")
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    with ALLOWED:
        assert desk.put("/api/v1/organizations", body, format="json").status_code == 403
        assert cloud.put("/api/v1/organizations", body, format="json").status_code == 200
    assert Organization.objects.get().invoice_footer == "Merci!"


def test_put_organizations_changes_what_invoices_say_audited(cloud, desk):
    assert cloud.post("/api/v1/webhook_endpoints", {"webhook_endpoint": {"webhook_url": "https://cloud.example/hook"}},
                      format="json").status_code == 200
    with ALLOWED:
        response = cloud.put("/api/v1/organizations", {"organization": {
            "email": "billing@nexa.example", "address_line2": "Suite 3000", "legal_number": "1000123",
            "billing_configuration": {"invoice_footer": "Thank you.\nPayable within 30 days.", "document_locale": "fr"},
            # Sent back unchanged, as an app that read the body does: accepted.
            "timezone": "America/Toronto", "default_currency": "CAD", "document_numbering": "per_organization",
            "webhook_url": None, "email_settings": []}}, format="json")
    assert response.status_code == 200, response.json()
    organization = response.json()["organization"]
    assert (organization["email"], organization["address_line2"], organization["legal_number"]) == (
        "billing@nexa.example", "Suite 3000", "1000123")
    assert organization["billing_configuration"] == {
        "invoice_footer": "Thank you.\nPayable within 30 days.", "invoice_grace_period": 0, "document_locale": "fr"}
    assert (organization["webhook_url"], organization["webhook_urls"]) == (
        "https://cloud.example/hook", ["https://cloud.example/hook"])  # its own endpoints only
    assert organization["name"] == "Nexa Systems Inc." and organization["events_store"] == "postgres"
    # What the invoice PDF prints about the seller comes from the row now.
    from apps.invoicing.pdf import invoice_pdf_context
    from apps.invoicing.models import Invoice

    assert cloud.post("/api/v1/customers", {"customer": {"external_id": "acme", "name": "Acme", "country": "CA",
                                                         "state": "ON"}}, format="json").status_code == 200
    assert cloud.post("/api/v1/add_ons", {"add_on": {"code": "setup", "name": "Setup", "amount_cents": 1000,
                                                     "amount_currency": "CAD"}}, format="json").status_code == 200
    assert cloud.post("/api/v1/invoices", {"invoice": {"external_customer_id": "acme", "fees": [
        {"add_on_code": "setup"}]}}, format="json").status_code == 200
    seller = invoice_pdf_context(Invoice.objects.get())["seller"]
    assert seller == {"name": "Nexa Systems Inc.", "hst": "123456789 RT0001",
                      "address": "100 King Street West, Suite 3000, Toronto, ON M5X 1A9, CA",
                      "footer": "Thank you.\nPayable within 30 days."}
    # Audited: the row before and after, and who changed it.
    changed = OrganizationEvent.objects.filter(pgh_label="changed").select_related("pgh_context").get()
    before = OrganizationEvent.objects.get(pgh_label="before")
    assert (before.invoice_footer, changed.invoice_footer) == ("", "Thank you.\nPayable within 30 days.")
    assert changed.pgh_context.metadata["service"] == "nexacloud"


def test_the_hubs_billing_rules_are_refused_unless_unchanged(cloud):
    with ALLOWED:
        for field, value in (("timezone", "Europe/Paris"), ("default_currency", "USD"),
                             ("document_numbering", "per_customer"), ("net_payment_term", 30),
                             ("webhook_url", "https://x.example"), ("email_settings", ["invoice.finalized"])):
            response = cloud.put("/api/v1/organizations", {"organization": {field: value}}, format="json")
            assert (response.status_code, response.json()["error_details"]) == (422, {field: ["value_is_invalid"]}), field
        grace = cloud.put("/api/v1/organizations", {"organization": {"billing_configuration": {
            "invoice_grace_period": 3}}}, format="json")
        assert grace.json()["error_details"] == {"invoice_grace_period": ["value_is_invalid"]}
    assert OrganizationEvent.objects.count() == 0


def test_put_billing_entity_renames_the_organization(cloud):
    with ALLOWED:
        response = cloud.put("/api/v1/billing_entities/nexa_systems", {"billing_entity": {
            "name": "Nexa Systems", "legal_name": "Nexa Systems Inc.", "document_numbering": "per_billing_entity",
            "billing_configuration": {"invoice_footer": "Thanks"}}}, format="json")
        assert response.status_code == 200, response.json()
        assert cloud.put("/api/v1/billing_entities/acme", {"billing_entity": {"name": "X"}},
                         format="json").status_code == 404
    entity = response.json()["billing_entity"]
    assert (entity["name"], entity["invoice_footer"], entity["taxes"]) == ("Nexa Systems", "Thanks", [])
    assert cloud.get("/api/v1/billing_entities").json()["billing_entities"][0]["name"] == "Nexa Systems"


@pytest.mark.django_db(transaction=True)
def test_the_lago_client_reads_and_updates_them(cloud, live_server):
    from lago_python_client.client import Client
    from lago_python_client.exceptions import LagoApiError
    from lago_python_client.models.billing_entity import BillingEntity, BillingEntityUpdate
    from lago_python_client.models.organization import Organization as OrganizationInput, OrganizationBillingConfiguration

    key = cloud._credentials["HTTP_AUTHORIZATION"].split()[1]
    lago = Client(api_key=key, api_url=live_server.url)
    (entity,) = lago.billing_entities.find_all()["billing_entities"]
    assert (entity.code, entity.tax_identification_number) == ("nexa_systems", "123456789 RT0001")
    assert lago.billing_entities.find("nexa_systems").city == "Toronto"
    with pytest.raises(LagoApiError) as error:
        lago.billing_entities.create(BillingEntity(code="acme_us", name="Acme US"))
    assert error.value.status_code == 403
    with ALLOWED:
        updated = lago.billing_entities.update(BillingEntityUpdate(name="Nexa Systems"), "nexa_systems")
        organization = lago.organizations.update(OrganizationInput(
            default_currency="CAD", billing_configuration=OrganizationBillingConfiguration(invoice_footer="Merci")))
    assert updated.name == "Nexa Systems"
    assert (organization.name, organization.billing_configuration.invoice_footer) == ("Nexa Systems", "Merci")


def test_a_missing_row_is_seeded_again_from_settings(cloud):
    """A flushed test database (transactional tests) lost the migration's row: invoices and the API still read it."""
    Organization.objects.all().delete()
    (entity,) = cloud.get("/api/v1/billing_entities").json()["billing_entities"]
    assert {key: entity[key] for key in SEEDED} == SEEDED
    assert Organization.objects.count() == 1
