"""Lago's wallets (`/wallets`) and wallet transactions (`/wallet_transactions`): prepaid credits per customer."""
from __future__ import annotations

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.customers.selectors import account_link_get
from apps.invoicing.close.ongoing import wallets_ongoing_usage
from apps.invoicing.models import Wallet, WalletTransaction
from apps.invoicing.representations import wallet_out, wallet_transaction_out
from apps.invoicing.selectors import wallet_get, wallet_list, wallet_transaction_list
from apps.invoicing.wallets import wallet_create, wallet_terminate, wallet_transaction_create, wallet_update

from ..openapi import lago_operation, query
from ..pagination import paginate
from ..serializers.common import root_payload
from ..serializers.wallets import WalletIn, WalletTransactionIn, WalletUpdateIn


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


urlpatterns = [
    path("wallets", WalletListCreateView.as_view()),
    path("wallets/<str:lago_id>", WalletDetailView.as_view()),
    path("wallets/<str:lago_id>/wallet_transactions", WalletTransactionListView.as_view()),
    path("wallet_transactions", WalletTransactionCreateView.as_view()),
    path("customers/<str:external_id>/wallets", CustomerWalletListView.as_view()),
]
