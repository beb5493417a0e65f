"""lago-python-client's nested charge calls against a live hub (issue 21): a plan's charges and their filters
(/plans/{code}/charges…), a subscription's (/subscriptions/{external_id}/charges…).

Every call of the installed lago-python-client (1.55.0), the request it sends, whether Lago 1.51's OpenAPI document
has it, whether the hub routes it (docs/lago-deviations.yaml says why the absent ones are absent; the not-routed
ones are newer than Lago 1.51: quotes, order forms, orders) and the test modules that make it through the client.
Regenerate with `LAGO_OPENAPI=... python bench/lago_client_coverage.py`; test_lago_client_coverage.py fails when a
routed call has no client test.

client call                              request                                                                              1.51 hub        tests through the client
activity_logs.find                       GET /activity_logs/{resource_id}                                                     yes  routed     activity_logs
activity_logs.find_all                   GET /activity_logs                                                                   yes  routed     activity_logs
add_ons.create                           POST /add_ons                                                                        yes  routed     lago_client, resources_lago_client
add_ons.destroy                          DELETE /add_ons/{resource_id}                                                        yes  routed     lago_client
add_ons.find                             GET /add_ons/{resource_id}                                                           yes  routed     lago_client
add_ons.find_all                         GET /add_ons                                                                         yes  routed     lago_client
add_ons.update                           PUT /add_ons/{identifier}                                                            yes  routed     lago_client
api_logs.find                            GET /api_logs/{resource_id}                                                          yes  routed     api_logs
api_logs.find_all                        GET /api_logs                                                                        yes  routed     api_logs
applied_coupons.create                   POST /applied_coupons                                                                yes  routed     lago_client, resources_lago_client
applied_coupons.destroy                  DELETE /customers/{external_customer_id}/applied_coupons/{applied_coupon_id}         yes  routed     lago_client
applied_coupons.find_all                 GET /applied_coupons                                                                 yes  routed     lago_client
billable_metrics.create                  POST /billable_metrics                                                               yes  routed     charges_lago_client, lago_client, resources_lago_client
billable_metrics.destroy                 DELETE /billable_metrics/{resource_id}                                               yes  routed     resources_lago_client
billable_metrics.evaluate_expression     POST /billable_metrics/evaluate_expression                                           yes  absent     -
billable_metrics.find                    GET /billable_metrics/{resource_id}                                                  yes  routed     charges_lago_client
billable_metrics.find_all                GET /billable_metrics                                                                yes  routed     resources_lago_client
billable_metrics.update                  PUT /billable_metrics/{identifier}                                                   yes  routed     lago_client
billing_entities.create                  POST /billing_entities                                                               yes  routed     organization
billing_entities.find                    GET /billing_entities/{resource_id}                                                  yes  routed     organization
billing_entities.find_all                GET /billing_entities                                                                yes  routed     organization
billing_entities.update                  PUT /billing_entities/{identifier}                                                   yes  routed     organization
coupons.create                           POST /coupons                                                                        yes  routed     lago_client, resources_lago_client
coupons.destroy                          DELETE /coupons/{resource_id}                                                        yes  routed     lago_client
coupons.find                             GET /coupons/{resource_id}                                                           yes  routed     lago_client
coupons.find_all                         GET /coupons                                                                         yes  routed     lago_client
coupons.update                           PUT /coupons/{identifier}                                                            yes  routed     lago_client
credit_notes.create                      POST /credit_notes                                                                   yes  routed     invoices_lago_client, resources_lago_client
credit_notes.delete_all_metadata         DELETE /credit_notes/{resource_id}/metadata                                          yes  routed     invoice_actions
credit_notes.delete_metadata_key         DELETE /credit_notes/{resource_id}/metadata/{key}                                    yes  routed     invoice_actions
credit_notes.download                    POST /credit_notes/{resource_id}/download                                            yes  routed     invoice_actions
credit_notes.estimate                    POST /credit_notes/estimate                                                          yes  routed     resources_lago_client
credit_notes.find                        GET /credit_notes/{resource_id}                                                      yes  routed     resources_lago_client
credit_notes.find_all                    GET /credit_notes                                                                    yes  routed     invoices_lago_client
credit_notes.merge_metadata              PATCH /credit_notes/{resource_id}/metadata                                           yes  routed     invoice_actions
credit_notes.replace_metadata            POST /credit_notes/{resource_id}/metadata                                            yes  routed     invoice_actions
credit_notes.update                      PUT /credit_notes/{identifier}                                                       yes  routed     resources_lago_client
credit_notes.void                        PUT /credit_notes/{resource_id}/void                                                 yes  absent     -
customer_applied_coupons.find_all        GET /customers/{resource_id}/applied_coupons                                         yes  routed     resources_lago_client
customer_credit_notes.find_all           GET /customers/{resource_id}/credit_notes                                            yes  routed     resources_lago_client
customer_invoices.find_all               GET /customers/{resource_id}/invoices                                                yes  routed     resources_lago_client
customer_payment_methods.destroy         DELETE /customers/{customer_external_id}/payment_methods/{payment_method_id}         yes  routed     resources_lago_client
customer_payment_methods.find_all        GET /customers/{resource_id}/payment_methods                                         yes  routed     resources_lago_client
customer_payment_methods.set_as_default  PUT /customers/{customer_external_id}/payment_methods/{payment_method_id}/set_as_default yes  routed     resources_lago_client
customer_payment_requests.find_all       GET /customers/{resource_id}/payment_requests                                        yes  routed     resources_lago_client
customer_payments.find_all               GET /customers/{resource_id}/payments                                                yes  routed     resources_lago_client
customer_subscriptions.find_all          GET /customers/{resource_id}/subscriptions                                           yes  routed     resources_lago_client
customer_wallets.find_all                GET /customers/{resource_id}/wallets                                                 yes  routed     resources_lago_client
customers.checkout_url                   POST /customers/{resource_id}/checkout_url                                           yes  routed     payments
customers.create                         POST /customers                                                                      yes  routed     charges_lago_client, lago_client, payments, plan_terms_lago_client, resources_lago_client, wallets_lago_client
customers.current_usage                  GET /customers/{resource_id}/current_usage                                           yes  routed     resources_lago_client
customers.destroy                        DELETE /customers/{resource_id}                                                      yes  routed     resources_lago_client
customers.find                           GET /customers/{resource_id}                                                         yes  routed     lago_client, resources_lago_client
customers.find_all                       GET /customers                                                                       yes  routed     lago_client
customers.past_usage                     GET /customers/{resource_id}/past_usage                                              yes  routed     past_usage
customers.portal_url                     GET /customers/{resource_id}/portal_url                                              yes  routed     customer_portal
customers.projected_usage                GET /customers/{resource_id}/projected_usage                                         yes  routed     projected_usage
customers.wallets.alerts.create          POST /customers/{customer_id}/wallets/{wallet_code}/alerts                           yes  routed     resources_lago_client, wallets_lago_client
customers.wallets.alerts.create_batch    POST /customers/{customer_id}/wallets/{wallet_code}/alerts                           yes  routed     resources_lago_client
customers.wallets.alerts.destroy         DELETE /customers/{customer_id}/wallets/{wallet_code}/alerts/{id}                    yes  routed     resources_lago_client
customers.wallets.alerts.destroy_all     DELETE /customers/{customer_id}/wallets/{wallet_code}/alerts                         yes  routed     wallets_lago_client
customers.wallets.alerts.find            GET /customers/{customer_id}/wallets/{wallet_code}/alerts/{id}                       yes  routed     wallets_lago_client
customers.wallets.alerts.find_all        GET /customers/{customer_id}/wallets/{wallet_code}/alerts                            yes  routed     resources_lago_client
customers.wallets.alerts.update          PUT /customers/{customer_id}/wallets/{wallet_code}/alerts/{id}                       yes  routed     resources_lago_client
customers.wallets.create                 POST /customers/{customer_id}/wallets                                                yes  routed     resources_lago_client
customers.wallets.destroy                DELETE /customers/{customer_id}/wallets/{id}                                         yes  routed     wallets_lago_client
customers.wallets.find                   GET /customers/{customer_id}/wallets/{id}                                            yes  routed     wallets_lago_client
customers.wallets.find_all               GET /customers/{customer_id}/wallets                                                 yes  routed     resources_lago_client
customers.wallets.metadata.delete_all    DELETE /customers/{customer_id}/wallets/{wallet_code}/metadata                       yes  routed     resources_lago_client
customers.wallets.metadata.delete_key    DELETE /customers/{customer_id}/wallets/{wallet_code}/metadata/{key}                 yes  routed     resources_lago_client
customers.wallets.metadata.merge         PATCH /customers/{customer_id}/wallets/{wallet_code}/metadata                        yes  routed     resources_lago_client
customers.wallets.metadata.replace       POST /customers/{customer_id}/wallets/{wallet_code}/metadata                         yes  routed     resources_lago_client
customers.wallets.update                 PUT /customers/{customer_id}/wallets/{id}                                            yes  routed     resources_lago_client
events.batch_create                      POST /events/batch                                                                   yes  routed     usage_lago_client
events.create                            POST /events                                                                         yes  routed     events_read, immediate_invoices, usage_lago_client
events.estimate_fees                     POST /events/estimate_fees                                                           yes  routed     event_estimates
events.find                              GET /events/{resource_id}                                                            yes  routed     events_read
fees.destroy                             DELETE /fees/{resource_id}                                                           yes  routed     resources_lago_client
fees.find                                GET /fees/{resource_id}                                                              yes  routed     fees, resources_lago_client
fees.find_all                            GET /fees                                                                            yes  routed     fees
fees.update                              PUT /fees/{identifier}                                                               yes  routed     resources_lago_client
gross_revenues.find_all                  GET /analytics/gross_revenue                                                         yes  routed     analytics
invoice_collections.find_all             GET /analytics/invoice_collection                                                    yes  routed     analytics
invoiced_usages.find_all                 GET /analytics/invoiced_usage                                                        yes  routed     analytics
invoices.create                          POST /invoices                                                                       yes  routed     lago_client, resources_lago_client
invoices.destroy                         DELETE /invoices/{resource_id}                                                       yes  routed     invoice_delete
invoices.download                        POST /invoices/{resource_id}/download                                                yes  routed     invoices_lago_client
invoices.finalize                        PUT /invoices/{resource_id}/finalize                                                 yes  routed     invoices_lago_client
invoices.find                            GET /invoices/{resource_id}                                                          yes  routed     invoices_lago_client
invoices.find_all                        GET /invoices                                                                        yes  routed     immediate_invoices, invoices_lago_client
invoices.lose_dispute                    PUT /invoices/{resource_id}/lose_dispute                                             no   routed     invoice_actions
invoices.payment_url                     POST /invoices/{resource_id}/payment_url                                             yes  routed     payments
invoices.preview                         POST /invoices/preview                                                               yes  routed     invoice_preview
invoices.refresh                         PUT /invoices/{resource_id}/refresh                                                  yes  routed     invoices_lago_client
invoices.retry                           POST /invoices/{resource_id}/retry                                                   yes  routed     resources_lago_client
invoices.retry_payment                   POST /invoices/{resource_id}/retry_payment                                           yes  routed     payments
invoices.update                          PUT /invoices/{identifier}                                                           yes  routed     invoice_update
invoices.void                            POST /invoices/{resource_id}/void                                                    yes  routed     invoices_lago_client
invoices.void_invoice                    POST /invoices/{resource_id}/void                                                    yes  routed     resources_lago_client
mrrs.find_all                            GET /analytics/mrr                                                                   yes  routed     analytics
order_forms.find                         GET /order_forms/{resource_id}                                                       no   not routed -
order_forms.find_all                     GET /order_forms                                                                     no   not routed -
order_forms.mark_as_signed               POST /order_forms/{resource_id}/mark_as_signed                                       no   not routed -
order_forms.void                         POST /order_forms/{resource_id}/void                                                 no   not routed -
orders.execute                           POST /orders/{resource_id}/execute                                                   no   not routed -
orders.find                              GET /orders/{resource_id}                                                            no   not routed -
orders.find_all                          GET /orders                                                                          no   not routed -
organizations.update                     PUT /organizations                                                                   yes  routed     organization
overdue_balances.find_all                GET /analytics/overdue_balance                                                       yes  routed     analytics
payment_receipts.find                    GET /payment_receipts/{resource_id}                                                  yes  routed     manual_payments
payment_receipts.find_all                GET /payment_receipts                                                                yes  routed     manual_payments
payment_requests.create                  POST /payment_requests                                                               yes  routed     payment_requests
payment_requests.find                    GET /payment_requests/{resource_id}                                                  yes  routed     payment_requests
payment_requests.find_all                GET /payment_requests                                                                yes  routed     payment_requests
payments.create                          POST /payments                                                                       yes  routed     manual_payments, resources_lago_client
payments.find                            GET /payments/{resource_id}                                                          yes  routed     manual_payments
payments.find_all                        GET /payments                                                                        yes  routed     manual_payments
plan_charges.create                      POST /plans/{parent_id}/charges                                                      yes  routed     charges_lago_client
plan_charges.destroy                     DELETE /plans/{parent_id}/charges/{child_id}                                         yes  routed     charges_lago_client
plan_charges.find                        GET /plans/{parent_id}/charges/{child_id}                                            yes  routed     charges_lago_client
plan_charges.find_all                    GET /plans/{resource_id}/charges                                                     yes  routed     charges_lago_client
plan_charges.update                      PUT /plans/{parent_id}/charges/{child_id}                                            yes  routed     charges_lago_client
plan_fixed_charges.create                POST /plans/{parent_id}/fixed_charges                                                yes  absent     -
plan_fixed_charges.destroy               DELETE /plans/{parent_id}/fixed_charges/{child_id}                                   yes  absent     -
plan_fixed_charges.find                  GET /plans/{parent_id}/fixed_charges/{child_id}                                      yes  absent     -
plan_fixed_charges.find_all              GET /plans/{resource_id}/fixed_charges                                               yes  absent     -
plan_fixed_charges.update                PUT /plans/{parent_id}/fixed_charges/{child_id}                                      yes  absent     -
plans.create                             POST /plans                                                                          yes  routed     charges_lago_client, lago_client, plan_terms_lago_client, resources_lago_client
plans.create_charge_filter               POST /plans/{plan_code}/charges/{charge_code}/filters                                yes  routed     charges_lago_client
plans.delete_all_metadata                DELETE /plans/{resource_id}/metadata                                                 yes  routed     plan_metadata
plans.delete_metadata_key                DELETE /plans/{resource_id}/metadata/{key}                                           yes  routed     plan_metadata
plans.destroy                            DELETE /plans/{resource_id}                                                          yes  routed     resources_lago_client
plans.destroy_charge_filter              DELETE /plans/{plan_code}/charges/{charge_code}/filters/{filter_id}                  yes  routed     charges_lago_client
plans.find                               GET /plans/{resource_id}                                                             yes  routed     charges_lago_client, lago_client, plan_terms_lago_client, resources_lago_client
plans.find_all                           GET /plans                                                                           yes  routed     lago_client, resources_lago_client
plans.find_all_charge_filters            GET /plans/{plan_code}/charges/{charge_code}/filters                                 yes  routed     charges_lago_client
plans.find_charge_filter                 GET /plans/{plan_code}/charges/{charge_code}/filters/{filter_id}                     yes  routed     charges_lago_client
plans.merge_metadata                     PATCH /plans/{resource_id}/metadata                                                  yes  routed     plan_metadata
plans.replace_metadata                   POST /plans/{resource_id}/metadata                                                   yes  routed     plan_metadata
plans.update                             PUT /plans/{identifier}                                                              yes  routed     lago_client
plans.update_charge_filter               PUT /plans/{plan_code}/charges/{charge_code}/filters/{filter_id}                     yes  routed     charges_lago_client
quote_versions.approve                   POST /quote_versions/{resource_id}/approve                                           no   not routed -
quote_versions.clone                     POST /quote_versions/{resource_id}/clone                                             no   not routed -
quote_versions.find                      GET /quote_versions/{resource_id}                                                    no   not routed -
quote_versions.void                      POST /quote_versions/{resource_id}/void                                              no   not routed -
quotes.find                              GET /quotes/{resource_id}                                                            no   not routed -
quotes.find_all                          GET /quotes                                                                          no   not routed -
quotes.versions                          GET /quotes/{resource_id}/versions                                                   no   not routed -
subscription_charges.find                GET /subscriptions/{parent_id}/charges/{child_id}                                    yes  routed     charges_lago_client
subscription_charges.find_all            GET /subscriptions/{resource_id}/charges                                             yes  routed     charges_lago_client
subscription_charges.update              PUT /subscriptions/{parent_id}/charges/{child_id}                                    yes  routed     charges_lago_client
subscription_fixed_charges.find          GET /subscriptions/{parent_id}/fixed_charges/{child_id}                              yes  absent     -
subscription_fixed_charges.find_all      GET /subscriptions/{resource_id}/fixed_charges                                       yes  absent     -
subscription_fixed_charges.update        PUT /subscriptions/{parent_id}/fixed_charges/{child_id}                              yes  absent     -
subscriptions.create                     POST /subscriptions                                                                  yes  routed     charges_lago_client, immediate_invoices, lago_client, plan_terms_lago_client, resources_lago_client
subscriptions.create_alerts              POST /subscriptions/{external_id}/alerts                                             yes  routed     plan_terms_lago_client
subscriptions.create_charge_filter       POST /subscriptions/{external_id}/charges/{charge_code}/filters                      yes  routed     charges_lago_client
subscriptions.delete_alerts              DELETE /subscriptions/{external_id}/alerts                                           yes  routed     plan_terms_lago_client
subscriptions.destroy                    DELETE /subscriptions/{resource_id}                                                  yes  routed     immediate_invoices, lago_client
subscriptions.destroy_charge_filter      DELETE /subscriptions/{external_id}/charges/{charge_code}/filters/{filter_id}        yes  routed     charges_lago_client
subscriptions.find                       GET /subscriptions/{resource_id}                                                     yes  routed     lago_client
subscriptions.find_all                   GET /subscriptions                                                                   yes  routed     lago_client
subscriptions.find_all_charge_filters    GET /subscriptions/{external_id}/charges/{charge_code}/filters                       yes  routed     charges_lago_client
subscriptions.find_charge_filter         GET /subscriptions/{external_id}/charges/{charge_code}/filters/{filter_id}           yes  routed     charges_lago_client
subscriptions.lifetime_usage             GET /subscriptions/{resource_id}/lifetime_usage                                      yes  routed     plan_terms_lago_client
subscriptions.update                     PUT /subscriptions/{identifier}                                                      yes  routed     lago_client
subscriptions.update_charge_filter       PUT /subscriptions/{external_id}/charges/{charge_code}/filters/{filter_id}           yes  routed     charges_lago_client
subscriptions.update_lifetime_usage      PUT /subscriptions/{resource_id}/lifetime_usage                                      yes  routed     plan_terms_lago_client
taxes.create                             POST /taxes                                                                          yes  routed     resources_lago_client
taxes.destroy                            DELETE /taxes/{resource_id}                                                          yes  routed     resources_lago_client
taxes.find                               GET /taxes/{resource_id}                                                             yes  routed     resources_lago_client
taxes.find_all                           GET /taxes                                                                           yes  routed     resources_lago_client
taxes.update                             PUT /taxes/{identifier}                                                              yes  routed     resources_lago_client
usages.find_all                          GET /analytics/usage                                                                 yes  routed     analytics
wallet_transactions.consumptions         GET /wallet_transactions/{resource_id}/consumptions                                  yes  routed     resources_lago_client
wallet_transactions.create               POST /wallet_transactions                                                            yes  routed     wallets_lago_client
wallet_transactions.find_all             GET /wallets/{wallet_id}/wallet_transactions                                         yes  routed     wallets_lago_client
wallet_transactions.fundings             GET /wallet_transactions/{resource_id}/fundings                                      yes  routed     resources_lago_client
wallet_transactions.payment_url          POST /wallet_transactions/{resource_id}/payment_url                                  yes  routed     resources_lago_client
wallets.create                           POST /wallets                                                                        yes  routed     resources_lago_client, wallets_lago_client
wallets.delete_all_metadata              DELETE /wallets/{resource_id}/metadata                                               yes  routed     resources_lago_client
wallets.delete_metadata_key              DELETE /wallets/{resource_id}/metadata/{key}                                         yes  routed     wallets_lago_client
wallets.destroy                          DELETE /wallets/{resource_id}                                                        yes  routed     wallets_lago_client
wallets.find                             GET /wallets/{resource_id}                                                           yes  routed     wallets_lago_client
wallets.find_all                         GET /wallets                                                                         yes  routed     wallets_lago_client
wallets.merge_metadata                   PATCH /wallets/{resource_id}/metadata                                                yes  routed     wallets_lago_client
wallets.replace_metadata                 POST /wallets/{resource_id}/metadata                                                 yes  routed     resources_lago_client
wallets.update                           PUT /wallets/{identifier}                                                            yes  routed     wallets_lago_client
webhook_endpoints.create                 POST /webhook_endpoints                                                              yes  routed     resources_lago_client
webhook_endpoints.destroy                DELETE /webhook_endpoints/{resource_id}                                              yes  routed     resources_lago_client
webhook_endpoints.find                   GET /webhook_endpoints/{resource_id}                                                 yes  routed     resources_lago_client
webhook_endpoints.find_all               GET /webhook_endpoints                                                               yes  routed     resources_lago_client
webhook_endpoints.update                 PUT /webhook_endpoints/{identifier}                                                  yes  routed     resources_lago_client
webhooks.public_key                      GET /webhooks/json_public_key                                                        yes  routed     jwt

194 client calls: 170 routed (170 with a client test), 10 deliberately absent, 14 not routed (0 of them in Lago 1.51)
"""
from __future__ import annotations

import pytest
from lago_python_client import mixins
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import BillableMetric, Charge, Charges, Customer, Plan, Subscription
from lago_python_client.models.billable_metric import BillableMetricFilter, BillableMetricFilters
from lago_python_client.models.charge import ChargeFilter, ChargeFilters
from lago_python_client.services.request import make_headers

from apps.catalog.models import Charge as ChargeRow
from apps.catalog.models import ChargeFilter as ChargeFilterRow
from apps.catalog.models import Plan as PlanRow
from apps.subscriptions.models import Subscription as SubscriptionRow

pytestmark = pytest.mark.django_db(transaction=True)

ALL = "__ALL_FILTER_VALUES__"


@pytest.fixture
def cloud(live_server, service_factory):
    issued = service_factory("nexacloud", "NexaCloud")
    return Client(api_key=issued.raw_key, api_url=live_server.url)


@pytest.fixture
def desk(live_server, service_factory):
    issued = service_factory("nexadesk", "NexaDesk")
    return Client(api_key=issued.raw_key, api_url=live_server.url)


@pytest.fixture
def authorized_child_lists(monkeypatch, cloud):
    """Give the client's child lists the Authorization header they leave out (`cloud`'s key).

    lago-python-client 1.55.0's FindAllChildrenCommandMixin.find_all (plan_charges.find_all,
    subscription_charges.find_all) sends its GET without `make_headers`, so Lago answers it 401 as the hub does
    (test_child_lists_without_a_key_are_refused). A client bug, not the hub's: only the test adapts."""
    real = mixins.send_get_request

    def with_key(url, **kwargs):
        if "headers" not in kwargs:
            kwargs["headers"] = make_headers(api_key=cloud.api_key)
        return real(url, **kwargs)

    monkeypatch.setattr(mixins, "send_get_request", with_key)


def _storage_plan(client: Client, **charge) -> None:
    """Lago's guide's storage metric (region × provider filters), a count metric, a plan with one storage charge."""
    client.billable_metrics.create(BillableMetric(
        name="Storage", code="gb", aggregation_type="sum_agg", field_name="gb",
        filters=BillableMetricFilters(__root__=[
            BillableMetricFilter(key="region", values=["africa", "europe", "us"]),
            BillableMetricFilter(key="provider", values=["aws", "gcp"])])))
    client.billable_metrics.create(BillableMetric(name="Calls", code="calls", aggregation_type="count_agg"))
    gb = client.billable_metrics.find("gb")
    client.plans.create(Plan(
        name="Standard plan", code="standard_plan", interval="monthly", amount_cents=1000, amount_currency="CAD",
        charges=Charges(__root__=[Charge(billable_metric_id=gb.lago_id, code="storage", charge_model="standard",
                                         properties={"amount": "2"}, **charge)])))


def test_child_lists_without_a_key_are_refused(cloud):
    _storage_plan(cloud)
    for call in (lambda: cloud.plan_charges.find_all("standard_plan"),
                 lambda: cloud.subscription_charges.find_all("s1")):
        with pytest.raises(LagoApiError) as refused:
            call()
        assert refused.value.status_code == 401


def test_plan_charges_are_created_listed_read_updated_and_deleted_through_the_client(cloud, desk,
                                                                                      authorized_child_lists):
    _storage_plan(cloud)
    calls = cloud.billable_metrics.find("calls")
    created = cloud.plan_charges.create("standard_plan", Charge(
        billable_metric_id=calls.lago_id, code="api_calls", charge_model="package", invoice_display_name="API calls",
        properties={"amount": "5", "package_size": 100, "free_units": 0}))
    assert (created.code, created.billable_metric_code, created.lago_billable_metric_id, created.charge_model,
            created.invoice_display_name, created.properties) == (
        "api_calls", "calls", calls.lago_id, "package", "API calls", {"amount": "5", "package_size": 100,
                                                                      "free_units": 0})
    row = ChargeRow.objects.get(plan__code="standard_plan", code="api_calls")
    assert str(row.lago_id) == created.lago_id
    assert (row.charge_model, row.properties) == ("package", {"amount": "5", "package_size": 100, "free_units": 0})

    listed = cloud.plan_charges.find_all("standard_plan")
    assert [item.code for item in listed["charges"]] == ["api_calls", "storage"]  # newest first, as Lago lists
    assert listed["meta"]["total_count"] == 2
    paged = cloud.plan_charges.find_all("standard_plan", {"per_page": 1, "page": 2})
    assert ([item.code for item in paged["charges"]], paged["meta"]["total_pages"]) == (["storage"], 2)
    found = cloud.plan_charges.find("standard_plan", "api_calls")
    assert found.dict() == created.dict()

    updated = cloud.plan_charges.update("standard_plan", "storage", Charge(
        properties={"amount": "3"}, invoice_display_name="Storage", min_amount_cents=500))
    assert (updated.code, updated.charge_model, updated.properties, updated.invoice_display_name,
            updated.min_amount_cents) == ("storage", "standard", {"amount": "3"}, "Storage", 500)
    storage = ChargeRow.objects.get(plan__code="standard_plan", code="storage")
    assert (storage.properties, storage.invoice_display_name, storage.min_amount_cents) == (
        {"amount": "3"}, "Storage", 500)
    assert ChargeRow.objects.filter(code="storage").count() == 1  # changed in place, not replaced

    deleted = cloud.plan_charges.destroy("standard_plan", "api_calls")
    assert (deleted.code, deleted.lago_id) == ("api_calls", created.lago_id)
    assert not ChargeRow.objects.filter(code="api_calls").exists()  # never billed: gone
    assert [item.code for item in cloud.plan_charges.find_all("standard_plan")["charges"]] == ["storage"]
    with pytest.raises(LagoApiError) as gone:
        cloud.plan_charges.find("standard_plan", "api_calls")
    assert (gone.value.status_code, gone.value.response["code"]) == (404, "charge_not_found")

    with pytest.raises(LagoApiError) as invalid:
        cloud.plan_charges.update("standard_plan", "storage", Charge(properties={"amount": "-1"}))
    assert invalid.value.status_code == 422
    assert ChargeRow.objects.get(code="storage").properties == {"amount": "3"}
    with pytest.raises(LagoApiError) as other_service:
        desk.plan_charges.destroy("standard_plan", "storage")
    assert (other_service.value.status_code, other_service.value.response["code"]) == (404, "plan_not_found")
    assert ChargeRow.objects.filter(code="storage").exists()


def test_plan_charge_filters_through_the_client(cloud, desk):
    _storage_plan(cloud)
    assert cloud.plans.find_all_charge_filters("standard_plan", "storage")["filters"] == []
    # Lago's guide, "Charges with filters": $1 for Africa & AWS, $0.50 for the other combinations.
    africa = cloud.plans.create_charge_filter("standard_plan", "storage", ChargeFilter(
        values={"region": ["africa"], "provider": ["aws"]}, invoice_display_name="Africa & AWS",
        properties={"amount": "1"}))
    other = cloud.plans.create_charge_filter("standard_plan", "storage", ChargeFilter(
        values={"region": [ALL], "provider": [ALL]}, properties={"amount": "0.5"}))
    stored = ChargeFilterRow.objects.get(invoice_display_name="Africa & AWS")
    assert (africa.lago_id, africa.values, africa.properties) == (
        str(stored.lago_id), {"region": ["africa"], "provider": ["aws"]}, {"amount": "1"})
    assert other.invoice_display_name is None
    listed = cloud.plans.find_all_charge_filters("standard_plan", "storage")
    assert [item.lago_id for item in listed["filters"]] == [africa.lago_id, other.lago_id]
    assert listed["meta"]["total_count"] == 2
    assert cloud.plans.find_charge_filter("standard_plan", "storage", africa.lago_id).dict() == africa.dict()
    assert [item.values for item in cloud.plans.find("standard_plan").charges.__root__[0].filters.__root__] == [
        {"region": ["africa"], "provider": ["aws"]}, {"region": [ALL], "provider": [ALL]}]

    # A change takes a new price and name; the values stay (Lago's update ignores them), so does the identity.
    changed = cloud.plans.update_charge_filter("standard_plan", "storage", africa.lago_id, ChargeFilter(
        properties={"amount": "1.5"}, values={"region": ["us"]}))
    assert (changed.lago_id, changed.values, changed.properties, changed.invoice_display_name) == (
        africa.lago_id, {"region": ["africa"], "provider": ["aws"]}, {"amount": "1.5"}, "Africa & AWS")
    stored.refresh_from_db()
    assert (stored.values, stored.properties, stored.deleted_at) == (
        {"region": ["africa"], "provider": ["aws"]}, {"amount": "1.5"}, None)

    removed = cloud.plans.destroy_charge_filter("standard_plan", "storage", other.lago_id)
    assert (removed.lago_id, removed.values) == (other.lago_id, {"region": [ALL], "provider": [ALL]})
    assert ChargeFilterRow.objects.get(lago_id=other.lago_id).deleted_at is not None  # soft: fees may point to it
    assert [item.lago_id for item in cloud.plans.find_all_charge_filters("standard_plan", "storage")["filters"]] == [
        africa.lago_id]
    with pytest.raises(LagoApiError) as gone:
        cloud.plans.find_charge_filter("standard_plan", "storage", other.lago_id)
    assert (gone.value.status_code, gone.value.response["code"]) == (404, "charge_filter_not_found")

    with pytest.raises(LagoApiError) as duplicate:
        cloud.plans.create_charge_filter("standard_plan", "storage", ChargeFilter(
            values={"region": ["africa"], "provider": ["aws"]}, properties={"amount": "9"}))
    assert (duplicate.value.status_code, duplicate.value.response["error_details"]) == (
        422, {"values": ["value_already_exist"]})
    with pytest.raises(LagoApiError) as other_service:
        desk.plans.update_charge_filter("standard_plan", "storage", africa.lago_id,
                                        ChargeFilter(properties={"amount": "9"}))
    assert other_service.value.status_code == 404
    assert ChargeFilterRow.objects.filter(deleted_at__isnull=True).get().properties == {"amount": "1.5"}


def test_subscription_charges_and_filters_through_the_client(cloud, desk, authorized_child_lists):
    _storage_plan(cloud, filters=ChargeFilters(__root__=[ChargeFilter(
        values={"region": ["africa"], "provider": ["aws"]}, invoice_display_name="Africa & AWS",
        properties={"amount": "1"})]))
    cloud.customers.create(Customer(external_id="acme", name="Acme", country="CA", state="ON"))
    cloud.subscriptions.create(Subscription(external_customer_id="acme", plan_code="standard_plan",
                                            external_id="s1"))
    catalog = cloud.plans.find("standard_plan")
    catalog_charge = catalog.charges.__root__[0]

    # Reads show the plan's charges until the subscription overrides one.
    listed = cloud.subscription_charges.find_all("s1")
    assert [item.dict() for item in listed["charges"]] == [catalog_charge.dict()]
    assert cloud.subscription_charges.find("s1", "storage").dict() == catalog_charge.dict()
    [africa] = cloud.subscriptions.find_all_charge_filters("s1", "storage")["filters"]
    assert cloud.subscriptions.find_charge_filter("s1", "storage", africa.lago_id).dict() == africa.dict()
    assert SubscriptionRow.objects.get().plan.parent_id is None  # reading copies nothing

    # A change lands on the subscription's own copy of the plan; the catalog plan stays as it was.
    overridden = cloud.subscription_charges.update("s1", "storage", Charge(
        properties={"amount": "3"}, invoice_display_name="Storage for Acme"))
    assert (overridden.code, overridden.properties, overridden.invoice_display_name) == (
        "storage", {"amount": "3"}, "Storage for Acme")
    assert overridden.lago_id != catalog_charge.lago_id
    assert [item.properties for item in overridden.filters.__root__] == [{"amount": "1"}]
    assert cloud.subscription_charges.find("s1", "storage").dict() == overridden.dict()
    own_plan = SubscriptionRow.objects.select_related("plan").get().plan
    assert own_plan.parent_id is not None
    assert ChargeRow.objects.get(plan=own_plan).properties == {"amount": "3"}
    assert cloud.plans.find("standard_plan").dict() == catalog.dict()
    assert PlanRow.objects.filter(code="standard_plan").count() == 2

    changed = cloud.subscriptions.update_charge_filter("s1", "storage", africa.lago_id, ChargeFilter(
        properties={"amount": "0.25"}, values={"region": ["us"]}))
    assert (changed.values, changed.properties) == ({"region": ["africa"], "provider": ["aws"]}, {"amount": "0.25"})
    assert ChargeFilterRow.objects.get(lago_id=changed.lago_id).values == {"region": ["africa"], "provider": ["aws"]}
    europe = cloud.subscriptions.create_charge_filter("s1", "storage", ChargeFilter(
        values={"region": ["europe"]}, invoice_display_name="Europe", properties={"amount": "0.5"}))
    assert [item.lago_id for item in cloud.subscriptions.find_all_charge_filters("s1", "storage")["filters"]] == [
        changed.lago_id, europe.lago_id]
    assert ChargeFilterRow.objects.get(lago_id=europe.lago_id).charge.plan_id == own_plan.pk

    removed = cloud.subscriptions.destroy_charge_filter("s1", "storage", europe.lago_id)
    assert (removed.lago_id, removed.invoice_display_name) == (europe.lago_id, "Europe")
    assert ChargeFilterRow.objects.get(lago_id=europe.lago_id).deleted_at is not None
    assert [item.lago_id for item in cloud.subscriptions.find_all_charge_filters("s1", "storage")["filters"]] == [
        changed.lago_id]
    assert [item.properties for item in cloud.plans.find("standard_plan").charges.__root__[0].filters.__root__] == [
        {"amount": "1"}]

    for call in (lambda: desk.subscription_charges.find("s1", "storage"),
                 lambda: desk.subscriptions.find_all_charge_filters("s1", "storage")):
        with pytest.raises(LagoApiError) as other_service:
            call()
        assert other_service.value.status_code == 404
