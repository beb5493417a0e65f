"""localstripe for the test suite: loopback only, no pickle file, plus /v1/account and a minimal
Checkout Session fake (research/stripe.md §b). Run: python tests/ls_server.py --port 8421
"""
# tests/ls_server.py  — python tests/ls_server.py --port 8421
import argparse, logging, time
from aiohttp import web
from localstripe import resources as R
from localstripe.errors import UserError
from localstripe.server import (api_create, api_list_all, api_retrieve, app,
                                get_post_data, json_response)
from localstripe.webhooks import schedule_webhook

p = argparse.ArgumentParser(); p.add_argument("--host", default="127.0.0.1")
p.add_argument("--port", type=int, default=8420); args = p.parse_args()
R.Store.dump_to_disk = lambda self: None          # no pickle file
R.Store.try_load_from_disk = lambda self: None
ACCOUNT = {"id": "acct_localstripe", "object": "account", "type": "standard", "country": "DE",
           "default_currency": "eur", "charges_enabled": True, "payouts_enabled": True,
           "details_submitted": True, "email": None, "created": int(time.time()), "metadata": {},
           "settings": {"dashboard": {"display_name": "localstripe"}}}
async def account(request): return web.json_response(ACCOUNT)
async def accounts(request):
    return web.json_response({"object": "list", "url": "/v1/accounts", "has_more": False, "data": []})

class CheckoutSession(R.StripeObject):            # minimal fake: mode=setup|payment
    object, _id_prefix = "checkout.session", "cs_test_"
    def __init__(self, mode=None, customer=None, success_url=None, cancel_url=None,
                 line_items=None, currency=None, metadata=None, client_reference_id=None,
                 payment_method_types=None, customer_email=None, **kwargs):
        if mode not in ("payment", "setup") or not success_url:
            raise UserError(400, "Bad request")
        if customer:
            R.Customer._api_retrieve(customer)
        amount = None
        if mode == "payment":                     # only line_items[].price_data
            try:
                amount = sum(int(li["price_data"]["unit_amount"]) * int(li.get("quantity", 1))
                             for li in line_items)
                currency = line_items[0]["price_data"]["currency"]
            except (TypeError, KeyError, IndexError, ValueError):
                raise UserError(400, "Bad request: line_items[].price_data required")
        super().__init__()
        self.mode, self.customer, self.currency = mode, customer, currency
        self.amount_total = self.amount_subtotal = amount
        self.success_url, self.cancel_url = success_url, cancel_url
        self.metadata, self.client_reference_id = metadata or {}, client_reference_id
        self.customer_email, self.payment_method_types = customer_email, payment_method_types or ["card"]
        self.status, self.payment_status = "open", "unpaid"
        self.payment_intent = self.setup_intent = self.subscription = None
        self.expires_at = self.created + 86400
        self.url = "http://localstripe.invalid/checkout/" + self.id
        # dj-stripe retrieves with expand=[line_items, total_details.breakdown, ...]
        self.line_items = {"object": "list", "has_more": False, "data": [], "url": ""}
        self.total_details = {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0,
                              "breakdown": {"discounts": [], "taxes": []}}

async def checkout_complete(request):             # test helper: "the customer finished"
    data = await get_post_data(request) or {}
    cs = CheckoutSession._api_retrieve(request.match_info["id"])
    if cs.status != "open":
        raise UserError(400, "Session is not open")
    pm = R.PaymentMethod._api_retrieve(data.get("payment_method", "pm_card_visa"))
    if cs.customer:
        R.PaymentMethod._api_attach(pm.id, customer=cs.customer)   # 402 for ...0002
    if cs.mode == "setup":
        si = R.SetupIntent(customer=cs.customer)
        R.SetupIntent._api_confirm(si.id, payment_method=pm.id)
        cs.setup_intent, cs.payment_status = si.id, "no_payment_required"
    else:
        pi = R.PaymentIntent(amount=cs.amount_total, currency=cs.currency,
                             customer=cs.customer, payment_method=pm.id)
        cs.payment_intent = pi.id
        pi._confirm(on_failure_now=pi._report_failure)             # 402 on decline
        cs.payment_status = "paid"
    cs.status = "complete"
    schedule_webhook(R.Event("checkout.session.completed", cs))
    return json_response(cs._export())

async def checkout_expire(request):                # POST /v1/checkout/sessions/{id}/expire, as Stripe
    cs = CheckoutSession._api_retrieve(request.match_info["id"])
    if cs.status != "open":
        raise UserError(400, 'Only Checkout Sessions with a status in ["open"] can be expired.')
    cs.status = "expired"
    schedule_webhook(R.Event("checkout.session.expired", cs))
    return json_response(cs._export())

CS = "/v1/checkout/sessions"
app.router.add_get("/v1/account", account); app.router.add_get("/v1/accounts", accounts)
app.router.add_post(CS, api_create(CheckoutSession, CS))
app.router.add_get(CS, api_list_all(CheckoutSession, CS))
app.router.add_get(CS + "/{id}", api_retrieve(CheckoutSession, CS))
app.router.add_post(CS + "/{id}/expire", checkout_expire)
app.router.add_post("/_config/checkout_sessions/{id}/complete", checkout_complete)
log = logging.getLogger("aiohttp.access"); log.setLevel(logging.INFO); log.addHandler(logging.StreamHandler())
web.run_app(app, host=args.host, port=args.port, access_log=log)
