"""Staff grant credits to a wallet (issue 20): a reason is required, the write goes through the API's top-up service
(a granted transaction, its webhook, the balance), and the audit trail shows who and why; accountants may not."""
from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.invoicing.models import Wallet, WalletTransaction
from apps.invoicing.wallets import wallet_create, wallet_terminate
from apps.webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def tokens(billing) -> Wallet:
    link = billing.customer("acme")
    created, _ = wallet_create(service=billing.service, link=link, values={
        "currency": "CAD", "rate_amount": Decimal("0.5"), "name": "Tokens", "granted_credits": Decimal("10")})
    return created


def test_granting_credits_asks_why_writes_through_the_service_and_is_audited(admin_client, tokens):
    page = admin_client.get(reverse("admin:invoicing_wallet_change", args=[tokens.pk])).content.decode()
    url = reverse("admin:invoicing_wallet_grant", args=[tokens.pk])
    assert url in page
    refused = admin_client.post(url, {"granted_credits": "30", "reason": ""})
    assert refused.status_code == 200 and b"This field is required" in refused.content
    assert admin_client.post(url, {"granted_credits": "-1", "reason": "goodwill for the outage"}).status_code == 200
    tokens.refresh_from_db()
    assert tokens.balance_amount_cents == 500  # nothing written

    done = admin_client.post(url, {"granted_credits": "30", "reason": "goodwill for the 3 May outage"})
    assert done.status_code == 302
    tokens.refresh_from_db()
    assert tokens.balance_amount_cents == 500 + 1500
    row = WalletTransaction.objects.filter(wallet=tokens).order_by("-id").first()
    assert (row.transaction_status, row.status, row.amount_cents, row.credit_amount) == (
        "granted", "settled", 1500, Decimal("30"))
    assert WebhookEvent.objects.filter(event_type="wallet_transaction.created",
                                       object_id=str(row.lago_id)).exists()
    event = AuditEvent.objects.filter(pgh_obj_model="invoicing.WalletTransaction", pgh_obj_id=str(row.pk),
                                      pgh_label="created").get()
    assert (event.pgh_context["actor"], event.pgh_context["reason"]) == ("admin", "goodwill for the 3 May outage")
    trail = admin_client.get(reverse("admin:audit_auditevent_changelist") + f"?obj=invoicing.Wallet:{tokens.pk}")
    assert "goodwill for the 3 May outage" in trail.content.decode()


def test_a_terminated_wallet_refuses_and_accountants_may_not_grant(admin_client, tokens):
    wallet_terminate(wallet=tokens)
    before = WalletTransaction.objects.filter(wallet=tokens).count()  # the grant, and the forfeit of what was left
    url = reverse("admin:invoicing_wallet_grant", args=[tokens.pk])
    response = admin_client.post(url, {"granted_credits": "1", "reason": "late goodwill"})
    assert response.status_code == 200 and b"wallet" in response.content.lower()
    assert WalletTransaction.objects.filter(wallet=tokens).count() == before == 2

    call_command("staff_groups", stdout=StringIO())
    user = User.objects.create_user("acct", password="pw-staff-12345", is_staff=True)
    user.groups.add(Group.objects.get(name="Accountants"))
    accountant = Client()
    accountant.force_login(user)
    assert accountant.post(url, {"granted_credits": "1", "reason": "just because"}).status_code == 403
