"""A subscription whose ending date passed before anything applied it (the transitions job and the close had not
run yet) ends at that date, whatever the API does to it next (issue 15, found by the state machine).

A plan change then replaced the subscription as if it were still running: the old plan was billed until the change
and the successor inherited the ending date already past, so it was billed for periods after it. A termination
then ended it at the request, billing the days after its ending date.
"""
from __future__ import annotations

import pytest
import time_machine

from apps.subscriptions.models import Subscription
from apps.subscriptions.services import SubscriptionRequest, subscription_create, subscription_terminate

from .conftest import Billing, at

pytestmark = pytest.mark.django_db


def _ending_on_march_9(billing: Billing):
    basic = billing.plan("basic", amount_cents=1000, pay_in_advance=True)
    pro = billing.plan("pro", amount_cents=3000, pay_in_advance=True)
    billing.customer()
    with time_machine.travel(at(2026, 3, 1, 0, 0), tick=False):
        subscription = subscription_create(service=billing.service, request=SubscriptionRequest(
            external_id="s1", external_customer_id="acme", plan=basic, ending_at=at(2026, 3, 9, 7)))
    return subscription, pro


def test_a_plan_change_after_the_ending_date_starts_a_new_subscription(service_factory):
    billing = Billing(service_factory("nexacloud", "NexaCloud").service)
    ended, pro = _ending_on_march_9(billing)

    with time_machine.travel(at(2026, 4, 2, 3), tick=False):
        created = subscription_create(service=billing.service, request=SubscriptionRequest(
            external_id="s1", external_customer_id="acme", plan=pro))

    ended.refresh_from_db()
    assert (ended.status, ended.terminated_at) == (Subscription.Status.TERMINATED, at(2026, 3, 9, 7))
    assert created.previous_subscription_id is None and created.ending_at is None
    assert created.started_at == at(2026, 4, 2, 3)


def test_a_termination_after_the_ending_date_keeps_that_date(service_factory):
    billing = Billing(service_factory("nexacloud", "NexaCloud").service)
    ended, _ = _ending_on_march_9(billing)

    with time_machine.travel(at(2026, 4, 2, 3), tick=False):
        subscription_terminate(subscription_id=ended.pk)

    ended.refresh_from_db()
    assert (ended.status, ended.terminated_at) == (Subscription.Status.TERMINATED, at(2026, 3, 9, 7))
