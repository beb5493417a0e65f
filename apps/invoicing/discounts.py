"""Coupon arithmetic, pure (no database): which fees a customer's coupons discount, by how much, in Lago's order.

Lago (`lago-api:app/services/credits/applied_coupons_service.rb`, `credits/applied_coupon_service.rb`,
`applied_coupons/amount_service.rb`):
- coupons limited to billable metrics first, then those limited to plans, then the others, each group oldest
  applied first; the loop stops once nothing is left to discount;
- a coupon's base is what its fees have left after the coupons before it (all the invoice's fees, or only the
  limited plans' / metrics' fees); a percentage takes `base × rate / 100` rounded, a fixed amount takes at most
  its amount (`once`: what remains of it; `recurring`/`forever`: its amount every invoice), never more than the
  base; a fixed amount in another currency than the invoice's is skipped;
- the discount is spread over those fees pro rata of what each had left, and comes off before tax.
The hub differs in two ways, both so that the ledger and the invoice agree to the cent: each coupon's discount is
spread in whole minor units (largest remainder, ties to the earlier fee), so a coupon's line is exactly the sum of
its shares (Lago keeps fractional `precise_coupons_amount_cents`); and a coupon of one service discounts only
that service's fees, since an invoice of a customer linked across services carries every service's lines.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal


@dataclass(frozen=True)
class FeeBase:
    """A fee a coupon may discount."""

    fee_id: int
    service_id: int | None
    plan_id: int | None  # the subscription's plan (base fee and charges alike)
    metric_id: int | None  # usage fees only
    amount_cents: int  # minor units, before coupons


@dataclass
class CouponState:
    """An applied coupon as the invoice consumes it (mutated in place)."""

    applied_coupon_id: int
    service_id: int
    coupon_type: str  # fixed_amount | percentage
    frequency: str  # once | recurring | forever
    currency: str  # fixed amounts only ("" for a percentage)
    amount_cents: int | None  # fixed: per invoice (recurring, forever) or in all (once)
    amount_cents_remaining: int | None  # fixed + once
    percentage_rate: Decimal | None
    frequency_duration_remaining: int | None  # recurring
    plan_ids: frozenset[int] = frozenset()
    metric_ids: frozenset[int] = frozenset()
    order: tuple = ()  # (applied_at, id): oldest first within its group
    terminated: bool = False

    @property
    def sort_key(self) -> tuple:
        return (0 if self.metric_ids else 1 if self.plan_ids else 2, *self.order)

    def eligible(self, fee: FeeBase) -> bool:
        if fee.service_id != self.service_id or fee.amount_cents <= 0:
            return False
        if self.metric_ids:
            return fee.metric_id in self.metric_ids
        if self.plan_ids:
            return fee.plan_id in self.plan_ids
        return True


@dataclass
class CouponUse:
    applied_coupon_id: int
    amount_cents: int
    shares: dict[int, int] = field(default_factory=dict)  # fee id -> minor units


def spread(amount: int, bases: list[tuple[int, int]]) -> dict[int, int]:
    """Split `amount` minor units over (key, base) pro rata, in whole units adding up to `amount` exactly.

    Largest remainder: each key gets the floor of its exact share, and the units left go to the largest
    fractions (ties to the earlier key). `amount` must not exceed the sum of the bases, so no share exceeds its base.
    """
    total = sum(base for _, base in bases)
    if amount < 0 or amount > total:
        raise ValueError(f"cannot spread {amount} over {total}")
    if amount == 0:
        return {}
    floors = {key: amount * base // total for key, base in bases}
    left = amount - sum(floors.values())
    by_fraction = sorted(range(len(bases)), key=lambda i: (-(amount * bases[i][1] % total), i))
    for index in by_fraction[:left]:
        floors[bases[index][0]] += 1
    return {key: cents for key, cents in floors.items() if cents}


def _amount(coupon: CouponState, base: int) -> int:
    if coupon.coupon_type == "percentage":
        exact = Decimal(base) * coupon.percentage_rate / 100
        return min(int(exact.quantize(Decimal(1), ROUND_HALF_UP)), base)
    cap = coupon.amount_cents_remaining if coupon.frequency == "once" else coupon.amount_cents
    return min(cap or 0, base)


def coupons_allocate(*, currency: str, fees: list[FeeBase], coupons: list[CouponState]) -> list[CouponUse]:
    """Apply the coupons (any order given) to one invoice's fees in Lago's order; return each coupon's use.

    Updates the coupons' remaining amount / periods and `terminated` as Lago does: a `once` percentage ends after
    its invoice, a `once` fixed amount when consumed, a `recurring` one after its last period, `forever` never.
    A coupon whose fees are not on the invoice (or whose currency differs) is untouched.
    """
    taken: dict[int, int] = {fee.fee_id: 0 for fee in fees}
    uses: list[CouponUse] = []
    for coupon in sorted(coupons, key=lambda c: c.sort_key):
        if sum(fee.amount_cents for fee in fees) - sum(taken.values()) <= 0:
            break
        if coupon.coupon_type == "fixed_amount" and coupon.currency != currency:
            continue
        bases = [(fee.fee_id, fee.amount_cents - taken[fee.fee_id]) for fee in fees if coupon.eligible(fee)]
        base = sum(left for _, left in bases)
        if not bases or base <= 0:
            continue
        amount = _amount(coupon, base)
        shares = spread(amount, bases)
        for fee_id, cents in shares.items():
            taken[fee_id] += cents
        uses.append(CouponUse(applied_coupon_id=coupon.applied_coupon_id, amount_cents=amount, shares=shares))
        if coupon.frequency == "once":
            if coupon.coupon_type == "percentage":
                coupon.terminated = True
            else:
                coupon.amount_cents_remaining -= amount
                coupon.terminated = coupon.amount_cents_remaining <= 0
        elif coupon.frequency == "recurring":
            coupon.frequency_duration_remaining = max((coupon.frequency_duration_remaining or 0) - 1, 0)
            coupon.terminated = coupon.frequency_duration_remaining <= 0
    return uses
