"""Lago's wallets (`/wallets`) and wallet transactions (`/wallet_transactions`): prepaid credits per customer."""
from __future__ import annotations

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.customers.selectors import account_link_get
from apps.invoicing.close.ongoing import wallets_ongoing_usage
from apps.invoicing.models import Wallet, WalletAlert, WalletTransaction
from apps.invoicing.recurring import wallets_balance_check_on_commit
from apps.invoicing.wallet_alerts import (wallet_alert_delete, wallet_alert_get, wallet_alert_update,
                                          wallet_alerts_create, wallet_alerts_delete_all)
from apps.invoicing.representations import wallet_alert_out, wallet_out, wallet_transaction_out
from apps.core.exceptions import ValidationFailed
from apps.invoicing.selectors import (wallet_get, wallet_get_by_code, wallet_list, wallet_transaction_get,
                                      wallet_transaction_list)
from apps.invoicing.wallets import (wallet_create, wallet_metadata_key_delete, wallet_metadata_update,
                                    wallet_terminate, wallet_transaction_create, wallet_update)

from ..openapi import lago_operation, query
from ..pagination import paginate
from ..serializers.common import root_payload
from ..serializers.wallets import WalletIn, WalletMetadataIn, WalletTransactionIn, WalletUpdateIn


def _wallet_body(service, wallet: Wallet) -> dict:
    return {"wallet": _one(wallet_get(service=service, lago_id=wallet.lago_id))}


def _one(wallet: Wallet) -> dict:
    return wallet_out(wallet, usage_cents=wallets_ongoing_usage([wallet])[wallet.pk])


def _many(wallets) -> list[dict]:
    wallets = list(wallets)
    usage = wallets_ongoing_usage(wallets)
    return [wallet_out(wallet, usage_cents=usage[wallet.pk]) for wallet in wallets]


class WalletListCreateView(APIView):
    @lago_operation("createWallet", request=WalletIn, root="wallet", response="Wallet")
    def post(self, request):
        serializer = WalletIn(data=root_payload(request, "wallet"))
        serializer.is_valid(raise_exception=True)
        values = dict(serializer.validated_data)
        service = request.auth.service
        link = account_link_get(service=service, external_id=values.pop("external_customer_id"))
        wallet, _ = wallet_create(service=service, link=link, values=values)
        return Response(_wallet_body(service, wallet))

    @lago_operation("findAllWallets", response="Wallet", plural="wallets",
                    parameters=[query("external_customer_id"), query("status", enum=Wallet.Status.values)])
    def get(self, request):
        params = request.query_params
        status = params.get("status")
        rows = wallet_list(service=request.auth.service,
                           external_customer_id=params.get("external_customer_id") or None,
                           status=status if status in Wallet.Status.values else None)
        return Response(paginate(request, rows, "wallets", _many))


class CustomerWalletListView(APIView):
    @lago_operation("findAllCustomerWallets", response="Wallet", plural="wallets",
                    parameters=[query("status", enum=Wallet.Status.values)])
    def get(self, request, external_id: str):
        service = request.auth.service
        account_link_get(service=service, external_id=external_id)  # 404 customer_not_found
        status = request.query_params.get("status")
        rows = wallet_list(service=service, external_customer_id=external_id,
                           status=status if status in Wallet.Status.values else None)
        return Response(paginate(request, rows, "wallets", _many))


class WalletDetailView(APIView):
    @lago_operation("findWallet", response="Wallet", root="wallet")
    def get(self, request, lago_id: str):
        return Response({"wallet": _one(wallet_get(service=request.auth.service, lago_id=lago_id))})

    @lago_operation("updateWallet", request=WalletUpdateIn, root="wallet", partial=True, response="Wallet")
    def put(self, request, lago_id: str):
        service = request.auth.service
        wallet = wallet_get(service=service, lago_id=lago_id)
        serializer = WalletUpdateIn(data=root_payload(request, "wallet"), partial=True)
        serializer.is_valid(raise_exception=True)
        wallet = wallet_update(wallet=wallet, values=dict(serializer.validated_data))
        return Response(_wallet_body(service, wallet))

    @lago_operation("destroyWallet", response="Wallet", root="wallet")
    def delete(self, request, lago_id: str):
        service = request.auth.service
        wallet = wallet_terminate(wallet=wallet_get(service=service, lago_id=lago_id))
        return Response(_wallet_body(service, wallet))


class WalletTransactionCreateView(APIView):
    @lago_operation("createWalletTransaction", request=WalletTransactionIn, root="wallet_transaction",
                    response="WalletTransaction", many=True)
    def post(self, request):
        serializer = WalletTransactionIn(data=root_payload(request, "wallet_transaction"))
        serializer.is_valid(raise_exception=True)
        values = dict(serializer.validated_data)
        wallet = wallet_get(service=request.auth.service, lago_id=values.pop("wallet_id"))
        rows = wallet_transaction_create(wallet=wallet, values=values)
        return Response({"wallet_transactions": [wallet_transaction_out(row) for row in rows]})


class WalletTransactionListView(APIView):
    @lago_operation("findAllWalletTransactions", response="WalletTransaction", plural="wallet_transactions",
                    parameters=[query("status", enum=WalletTransaction.Status.values),
                                query("transaction_status", enum=WalletTransaction.TransactionStatus.values),
                                query("transaction_type", enum=WalletTransaction.TransactionType.values)])
    def get(self, request, lago_id: str):
        wallet = wallet_get(service=request.auth.service, lago_id=lago_id)
        params = request.query_params

        def pick(name, choices):
            value = params.get(name)
            return value if value in choices else None

        rows = wallet_transaction_list(
            wallet=wallet, status=pick("status", WalletTransaction.Status.values),
            transaction_status=pick("transaction_status", WalletTransaction.TransactionStatus.values),
            transaction_type=pick("transaction_type", WalletTransaction.TransactionType.values),
        )
        return Response(paginate(request, rows, "wallet_transactions",
                                 lambda items: [wallet_transaction_out(row) for row in items]))


class CustomerWalletCreateView(CustomerWalletListView):
    @lago_operation("createCustomerWallet", request=WalletIn, root="wallet", response="Wallet")
    def post(self, request, external_id: str):
        data = {**(root_payload(request, "wallet") or {}), "external_customer_id": external_id}
        serializer = WalletIn(data=data)
        serializer.is_valid(raise_exception=True)
        values = dict(serializer.validated_data)
        service = request.auth.service
        link = account_link_get(service=service, external_id=values.pop("external_customer_id"))
        wallet, _ = wallet_create(service=service, link=link, values=values)
        return Response(_wallet_body(service, wallet))


def _by_code(request, external_id: str, code: str) -> Wallet:
    service = request.auth.service
    account_link_get(service=service, external_id=external_id)  # 404 customer_not_found
    return wallet_get_by_code(service=service, external_customer_id=external_id, code=code)


class CustomerWalletDetailView(APIView):
    @lago_operation("findCustomerWallet", response="Wallet", root="wallet")
    def get(self, request, external_id: str, code: str):
        return Response({"wallet": _one(_by_code(request, external_id, code))})

    @lago_operation("updateCustomerWallet", request=WalletUpdateIn, root="wallet", partial=True, response="Wallet")
    def put(self, request, external_id: str, code: str):
        wallet = _by_code(request, external_id, code)
        serializer = WalletUpdateIn(data=root_payload(request, "wallet"), partial=True)
        serializer.is_valid(raise_exception=True)
        wallet = wallet_update(wallet=wallet, values=dict(serializer.validated_data))
        return Response(_wallet_body(request.auth.service, wallet))

    @lago_operation("destroyCustomerWallet", response="Wallet", root="wallet")
    def delete(self, request, external_id: str, code: str):
        wallet = wallet_terminate(wallet=_by_code(request, external_id, code))
        return Response(_wallet_body(request.auth.service, wallet))


def _metadata_in(request) -> dict | None:
    serializer = WalletMetadataIn(data=request.data if isinstance(request.data, dict) else {})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data["metadata"]


def _metadata_body(wallet: Wallet) -> dict:
    return {"metadata": Wallet.objects.get(pk=wallet.pk).metadata}


class _WalletMetadataBase(APIView):
    """Lago's wallet metadata: POST replaces, PATCH merges, DELETE clears; each answers the wallet's metadata."""

    def wallet(self, request, **kwargs) -> Wallet:
        raise NotImplementedError

    def _post(self, request, **kwargs):
        wallet = wallet_metadata_update(wallet=self.wallet(request, **kwargs), metadata=_metadata_in(request))
        return Response(_metadata_body(wallet))

    def _patch(self, request, **kwargs):
        wallet = wallet_metadata_update(wallet=self.wallet(request, **kwargs), metadata=_metadata_in(request),
                                        partial=True)
        return Response(_metadata_body(wallet))

    def _delete(self, request, **kwargs):
        wallet = wallet_metadata_update(wallet=self.wallet(request, **kwargs), metadata=None)
        return Response(_metadata_body(wallet))


_METADATA_REQUEST = {"$ref": "#/components/schemas/WalletMetadata"}  # {"metadata": {key: string|null}}, as answered


class WalletMetadataView(_WalletMetadataBase):
    def wallet(self, request, lago_id: str) -> Wallet:
        return wallet_get(service=request.auth.service, lago_id=lago_id)

    @lago_operation("replaceWalletMetadata", request=_METADATA_REQUEST, response="WalletMetadata")
    def post(self, request, lago_id: str):
        return self._post(request, lago_id=lago_id)

    @lago_operation("mergeWalletMetadata", request=_METADATA_REQUEST, response="WalletMetadata")
    def patch(self, request, lago_id: str):
        return self._patch(request, lago_id=lago_id)

    @lago_operation("deleteAllWalletMetadata", response="WalletMetadata")
    def delete(self, request, lago_id: str):
        return self._delete(request, lago_id=lago_id)


class WalletMetadataKeyView(APIView):
    @lago_operation("deleteWalletMetadataKey", response="WalletMetadata")
    def delete(self, request, lago_id: str, key: str):
        wallet = wallet_metadata_key_delete(wallet=wallet_get(service=request.auth.service, lago_id=lago_id), key=key)
        return Response(_metadata_body(wallet))


class CustomerWalletMetadataView(_WalletMetadataBase):
    def wallet(self, request, external_id: str, code: str) -> Wallet:
        return _by_code(request, external_id, code)

    @lago_operation("replaceCustomerWalletMetadata", request=_METADATA_REQUEST, response="WalletMetadata")
    def post(self, request, external_id: str, code: str):
        return self._post(request, external_id=external_id, code=code)

    @lago_operation("mergeCustomerWalletMetadata", request=_METADATA_REQUEST, response="WalletMetadata")
    def patch(self, request, external_id: str, code: str):
        return self._patch(request, external_id=external_id, code=code)

    @lago_operation("deleteAllCustomerWalletMetadata", response="WalletMetadata")
    def delete(self, request, external_id: str, code: str):
        return self._delete(request, external_id=external_id, code=code)


class CustomerWalletMetadataKeyView(APIView):
    @lago_operation("deleteCustomerWalletMetadataKey", response="WalletMetadata")
    def delete(self, request, external_id: str, code: str, key: str):
        wallet = wallet_metadata_key_delete(wallet=_by_code(request, external_id, code), key=key)
        return Response(_metadata_body(wallet))


class WalletTransactionDetailView(APIView):
    @lago_operation("findWalletTransaction", response="WalletTransaction", root="wallet_transaction")
    def get(self, request, lago_id: str):
        row = wallet_transaction_get(service=request.auth.service, lago_id=lago_id)
        return Response({"wallet_transaction": wallet_transaction_out(row)})


class WalletTransactionConsumptionsView(APIView):
    """Lago's traceable wallets (which top-up each consumption drew on) are not built: every wallet answers
    Lago's 422 for a wallet that is not traceable, after the transaction is found (404 otherwise)."""

    direction = "consumptions"

    def _refuse(self, request, lago_id: str):
        wallet_transaction_get(service=request.auth.service, lago_id=lago_id)
        raise ValidationFailed("wallet is not traceable", details={"wallet": ["not_traceable"]})

    @lago_operation("findAllWalletTransactionConsumptions", response="WalletTransactionConsumption",
                    plural="wallet_transaction_consumptions",
                    description="Answers 422 `not_traceable`: the hub's wallets are not traceable (README).")
    def get(self, request, lago_id: str):
        return self._refuse(request, lago_id)


class WalletTransactionFundingsView(WalletTransactionConsumptionsView):
    @lago_operation("findAllWalletTransactionFundings", response="WalletTransactionConsumption",
                    plural="wallet_transaction_fundings",
                    description="Answers 422 `not_traceable`: the hub's wallets are not traceable (README).")
    def get(self, request, lago_id: str):
        return self._refuse(request, lago_id)


class WalletTransactionPaymentUrlView(APIView):
    @lago_operation("walletTransactionPaymentUrl", response="WalletTransactionPaymentUrl",
                    summary="Stripe Checkout link paying a pending paid top-up's invoice")
    def post(self, request, lago_id: str):
        from apps.payments.services import invoice_payment_url

        row = wallet_transaction_get(service=request.auth.service, lago_id=lago_id)
        if row.transaction_status != WalletTransaction.TransactionStatus.PURCHASED:
            raise ValidationFailed("not purchased", details={"base": ["wallet_transaction_not_purchased"]})
        if row.status == WalletTransaction.Status.SETTLED:
            raise ValidationFailed("already settled", details={"base": ["wallet_transaction_already_settled"]})
        if row.invoice_id is None:
            raise ValidationFailed("no invoice", details={"base": ["wallet_transaction_has_no_attached_invoice"]})
        url = invoice_payment_url(invoice=row.invoice)
        link = row.wallet.account_link
        return Response({"wallet_transaction_payment_details": {
            "lago_customer_id": str(link.lago_id), "lago_wallet_transaction_id": str(row.lago_id),
            "external_customer_id": link.external_id, "payment_provider": "stripe", "payment_url": url}})


class CustomerWalletAlertsView(APIView):
    @lago_operation("getCustomerWalletAlerts", response="WalletAlert", plural="alerts")
    def get(self, request, external_id: str, code: str):
        wallet = _by_code(request, external_id, code)
        rows = WalletAlert.objects.filter(wallet=wallet, deleted_at__isnull=True).select_related(
            "wallet__service").order_by("created_at", "id")
        return Response(paginate(request, rows, "alerts", lambda items: [wallet_alert_out(a) for a in items]))

    @lago_operation("createCustomerWalletAlert", request={"$ref": "#/components/schemas/WalletAlertBody"},
                    response="WalletAlert", root="alert",
                    description="One alert under `alert`, or several at once under `alerts` (answered as a list).")
    def post(self, request, external_id: str, code: str):
        wallet = _by_code(request, external_id, code)
        data = request.data if isinstance(request.data, dict) else {}
        batch = data.get("alerts")
        items = batch if isinstance(batch, list) else [root_payload(request, "alert")]
        if not all(isinstance(item, dict) for item in items):
            raise ValidationFailed("invalid alert", details={"alert": ["value_is_invalid"]})
        created = wallet_alerts_create(wallet=wallet, items=items,
                                       usage_cents=wallets_ongoing_usage([wallet])[wallet.pk])
        wallets_balance_check_on_commit([wallet.pk])  # Lago processes a new wallet alert at once
        if isinstance(batch, list):
            return Response({"alerts": [wallet_alert_out(alert) for alert in created]})
        return Response({"alert": wallet_alert_out(created[0])})

    @lago_operation("deleteAllCustomerWalletAlerts", response=None)
    def delete(self, request, external_id: str, code: str):
        wallet_alerts_delete_all(wallet=_by_code(request, external_id, code))
        return Response(status=200)


class CustomerWalletAlertDetailView(APIView):
    @lago_operation("getCustomerWalletAlert", response="WalletAlert", root="alert")
    def get(self, request, external_id: str, code: str, alert_code: str):
        alert = wallet_alert_get(wallet=_by_code(request, external_id, code), code=alert_code)
        return Response({"alert": wallet_alert_out(alert)})

    @lago_operation("updateCustomerWalletAlert", request={"$ref": "#/components/schemas/WalletAlertBody"},
                    response="WalletAlert", root="alert")
    def put(self, request, external_id: str, code: str, alert_code: str):
        alert = wallet_alert_get(wallet=_by_code(request, external_id, code), code=alert_code)
        values = root_payload(request, "alert")
        if not isinstance(values, dict):
            raise ValidationFailed("invalid alert", details={"alert": ["value_is_invalid"]})
        return Response({"alert": wallet_alert_out(wallet_alert_update(alert=alert, values=values))})

    @lago_operation("deleteCustomerWalletAlert", response="WalletAlert", root="alert")
    def delete(self, request, external_id: str, code: str, alert_code: str):
        alert = wallet_alert_get(wallet=_by_code(request, external_id, code), code=alert_code)
        return Response({"alert": wallet_alert_out(wallet_alert_delete(alert=alert))})


urlpatterns = [
    path("wallets", WalletListCreateView.as_view()),
    path("wallets/<str:lago_id>", WalletDetailView.as_view()),
    path("wallets/<str:lago_id>/wallet_transactions", WalletTransactionListView.as_view()),
    path("wallet_transactions", WalletTransactionCreateView.as_view()),
    path("wallets/<str:lago_id>/metadata", WalletMetadataView.as_view()),
    path("wallets/<str:lago_id>/metadata/<str:key>", WalletMetadataKeyView.as_view()),
    path("wallet_transactions/<str:lago_id>", WalletTransactionDetailView.as_view()),
    path("wallet_transactions/<str:lago_id>/consumptions", WalletTransactionConsumptionsView.as_view()),
    path("wallet_transactions/<str:lago_id>/fundings", WalletTransactionFundingsView.as_view()),
    path("wallet_transactions/<str:lago_id>/payment_url", WalletTransactionPaymentUrlView.as_view()),
    path("customers/<str:external_id>/wallets", CustomerWalletCreateView.as_view()),
    path("customers/<str:external_id>/wallets/<str:code>", CustomerWalletDetailView.as_view()),
    path("customers/<str:external_id>/wallets/<str:code>/metadata", CustomerWalletMetadataView.as_view()),
    path("customers/<str:external_id>/wallets/<str:code>/metadata/<str:key>",
         CustomerWalletMetadataKeyView.as_view()),
    path("customers/<str:external_id>/wallets/<str:code>/alerts", CustomerWalletAlertsView.as_view()),
    path("customers/<str:external_id>/wallets/<str:code>/alerts/<str:alert_code>",
         CustomerWalletAlertDetailView.as_view()),
]
