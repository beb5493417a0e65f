"""Writes of the migration: phase switches (with the cutover guard), the shadow hooks other apps call, and the
event relay to Lago during a dual run. The import is importer.py; reconciliation reconcile.py."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone
from django.utils.dateparse import parse_date

from apps.core.exceptions import NotAllowed, ValidationFailed
from apps.customers.models import Service

from .importer import _until
from .lago_client import BATCH_MAX, LagoClient, LagoError
from .hooks import phase_service_ids
from .models import PhaseChange, RelayFailure, RelayStream, ServicePhase

logger = logging.getLogger(__name__)

Phase = ServicePhase.Phase
ALLOWED = {
    (Phase.LAGO, Phase.DUAL_RUN),  # start the dual run (apps then switch their base URL)
    (Phase.DUAL_RUN, Phase.LAGO),  # abort it: Lago never stopped being authoritative
    (Phase.DUAL_RUN, Phase.HUB),  # cutover, behind the guard
    (Phase.HUB, Phase.DUAL_RUN),  # roll a cutover back, while the hub has billed nothing on its own
}
INTERVAL_DAYS = {"weekly": 8, "monthly": 32, "quarterly": 93, "yearly": 367}  # a period and a day, at most


# --------------------------------------------------------------------------- phase switches


@dataclass
class GuardRow:
    external_id: str
    hub_through: tuple[datetime | None, datetime | None]  # (subscription period end, charges end), exclusive
    lago_through: tuple[datetime | None, datetime | None]

    @property
    def verdict(self) -> str:
        if self.hub_through == self.lago_through:
            return "ok"
        hub = max((moment for moment in self.hub_through if moment), default=None)
        lago = max((moment for moment in self.lago_through if moment), default=None)
        if lago is None or (hub is not None and hub > lago):
            return "would skip"  # billed only in shadow: after cutover nobody bills it
        return "would bill twice"  # Lago invoiced a period the hub has not: its next close would bill it again

    def as_dict(self) -> dict:
        def iso(pair):
            return [moment.isoformat() if moment else None for moment in pair]

        return {"external_id": self.external_id, "hub": iso(self.hub_through), "lago": iso(self.lago_through),
                "verdict": self.verdict}


@dataclass
class GuardReport:
    rows: list[GuardRow] = field(default_factory=list)
    shadow_drafts: int = 0

    @property
    def ok(self) -> bool:
        return not self.shadow_drafts and all(row.verdict == "ok" for row in self.rows)

    def problems(self) -> list[str]:
        out = [f"{row.external_id}: {row.verdict} (hub billed through {row.as_dict()['hub']}, Lago through "
               f"{row.as_dict()['lago']})" for row in self.rows if row.verdict != "ok"]
        if self.shadow_drafts:
            out.append(f"{self.shadow_drafts} shadow draft invoice(s) still in their grace period would be finalized "
                       "as authoritative after cutover: finalize them first")
        return out


def _hub_billed_through(service: Service) -> dict[str, tuple[datetime | None, datetime | None]]:
    """Per subscription external id: the end of the last subscription period and charges window the hub has
    invoiced (imported history, shadow or authoritative), exclusive."""
    from apps.invoicing.models import InvoiceSubscription

    rows = (InvoiceSubscription.objects.filter(subscription__service=service)
            .values("subscription__external_id")
            .annotate(sub_to=Max("to_datetime"), charges_to=Max("charges_to_datetime")))
    return {row["subscription__external_id"]: (row["sub_to"], row["charges_to"]) for row in rows}


def _lago_billed_through(client: LagoClient, *, since: date) -> dict[str, tuple[datetime | None, datetime | None]]:
    """The same from Lago's finalized subscription invoices issued since `since` (each read whole: lists omit
    billing periods)."""
    through: dict[str, list[datetime | None]] = {}
    page = 1
    while True:
        listing = client.list_page("invoices", page=page, params=[
            ("statuses[]", "finalized"), ("invoice_type", "subscription"), ("issuing_date_from", since.isoformat())])
        for listed in listing.items:
            issued = parse_date(str(listed.get("issuing_date")))
            if listed.get("status") != "finalized" or issued is None or issued < since:
                continue  # the filters again, in case a Lago-shaped source ignores them
            invoice = client.get("invoices", str(listed["lago_id"]), root="invoice")
            for period in invoice.get("billing_periods") or []:
                current = through.setdefault(period["external_subscription_id"], [None, None])
                ends = (_until(period.get("subscription_to_datetime")),
                        _until(period.get("charges_to_datetime") or period.get("subscription_to_datetime")))
                for index, end in enumerate(ends):
                    if end is not None and (current[index] is None or end > current[index]):
                        current[index] = end
        if listing.next_page is None:
            return {key: (value[0], value[1]) for key, value in through.items()}
        page = int(listing.next_page)


def _guard_since(service: Service, hub: dict) -> date:
    from apps.catalog.models import Plan

    intervals = set(Plan.objects.filter(service=service).values_list("interval", flat=True)) or {"monthly"}
    window = timedelta(days=max(INTERVAL_DAYS.get(interval, 367) for interval in intervals))
    known = [moment for pair in hub.values() for moment in pair if moment]
    return (min(known) if known else timezone.now()).date() - window


def cutover_guard(*, service: Service, client: LagoClient) -> GuardReport:
    """Compare, per subscription, where the hub's invoicing stops with where Lago's does: the first period the
    hub bills on its own must begin exactly where Lago's last invoiced period ends (nothing skipped, nothing
    billed twice). Reads Lago over the network: call outside any transaction holding locks."""
    from apps.invoicing.models import Invoice

    hub = _hub_billed_through(service)
    lago = _lago_billed_through(client, since=_guard_since(service, hub))
    report = GuardReport()
    for external_id in sorted(hub.keys() | lago.keys()):
        report.rows.append(GuardRow(external_id, hub.get(external_id, (None, None)), lago.get(external_id, (None, None))))
    report.shadow_drafts = (Invoice.objects.filter(status=Invoice.Status.DRAFT, fees__service=service)
                            .distinct().count())
    return report


def _shared_customers() -> int:
    """Customers with live subscriptions both in a dual-run service and in an authoritative one (no phase row, or
    `hub`): the close would put both on one invoice, which can be neither charged nor left in shadow."""
    dual = phase_service_ids(Phase.DUAL_RUN)
    if not dual:
        return 0
    not_authoritative = phase_service_ids(Phase.LAGO, Phase.DUAL_RUN)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(DISTINCT a.customer_id)
              FROM subscriptions_subscription a
              JOIN subscriptions_subscription b ON b.customer_id = a.customer_id
             WHERE a.service_id = ANY(%s) AND a.status IN ('active', 'pending')
               AND NOT (b.service_id = ANY(%s)) AND b.status IN ('active', 'pending')
            """,
            [dual, not_authoritative],
        )
        return cursor.fetchone()[0]


def _hub_billed_alone_since(service: Service, since: datetime | None) -> int:
    """Invoices of `service` the hub finalized as authoritative since `since` (not shadow, not Lago history)."""
    from apps.invoicing.models import Invoice

    from .models import LagoObject

    history = LagoObject.objects.filter(service=service, kind="invoice").values("hub_id")
    invoices = Invoice.objects.filter(fees__service=service).exclude(shadow__isnull=False).exclude(pk__in=history)
    invoices = invoices.filter(Q(status=Invoice.Status.DRAFT) | Q(finalized_at__gte=since) if since else Q())
    return invoices.distinct().count()


def phase_switch(*, service: Service, to_phase: str, reason: str, actor: str,
                 client: LagoClient | None = None) -> PhaseChange:
    """Move a service to another phase and audit it (who, when, why, from -> to, what the guard saw).

    - `lago` -> `dual_run`: opens the relay stream at the fenced usage watermark (every row accepted after the
      switch commits is relayed); refused while a customer of a dual-run service has subscriptions in an
      authoritative one (their invoices would mix).
    - `dual_run` -> `hub`: the cutover guard (`cutover_guard`, reading Lago through `client`) must pass.
    - leaving `dual_run`: the relay stream is closed at the fenced watermark and drains what it holds.
    - `hub` -> `dual_run`: refused once the hub has billed the service on its own since the cutover.
    Raises NotAllowed or ValidationFailed; writes nothing then.
    """
    if not reason or not reason.strip():
        raise ValidationFailed("a reason is required", details={"reason": ["value_is_mandatory"]})
    if to_phase not in Phase.values:
        raise ValidationFailed("unknown phase", details={"phase": ["value_is_invalid"]})
    current = ServicePhase.objects.filter(service=service).first()
    if current is None:
        raise NotAllowed(f"{service.code} has no migration: import it from Lago first", code="no_migration")
    if (current.phase, to_phase) not in ALLOWED:
        raise NotAllowed(f"{service.code}: {current.phase} -> {to_phase} is not a migration step", code="invalid_phase")
    report = None
    if to_phase == Phase.HUB:
        if client is None:
            client = LagoClient(api_url=current.lago_api_url, api_key=current.lago_api_key)
        report = cutover_guard(service=service, client=client)  # network reads, before any lock
    with transaction.atomic():
        phase = ServicePhase.objects.select_for_update().get(pk=current.pk)
        if phase.phase != current.phase:
            raise NotAllowed(f"{service.code} changed phase meanwhile ({phase.phase})", code="invalid_phase")
        now = timezone.now()
        details: dict = {}
        if report is not None:
            # The hub side again, under the lock: a close may have billed since the network reads.
            hub = _hub_billed_through(service)
            for row in report.rows:
                row.hub_through = hub.get(row.external_id, (None, None))
            details = {"guard": [row.as_dict() for row in report.rows], "shadow_drafts": report.shadow_drafts}
            if not report.ok:
                raise NotAllowed("cutover refused: " + "; ".join(report.problems()), code="cutover_refused",
                                 details=details)
        if phase.phase == Phase.HUB and to_phase == Phase.DUAL_RUN:
            last = PhaseChange.objects.filter(service=service, to_phase=Phase.HUB).order_by("-changed_at").first()
            billed = _hub_billed_alone_since(service, last.changed_at if last else None)
            if billed:
                raise NotAllowed(f"the hub has billed {service.code} on its own since the cutover ({billed} invoice(s)):"
                                 " void or credit them, or stay on the hub", code="rollback_refused")
        from apps.usage.services import usage_event_watermark

        if to_phase == Phase.DUAL_RUN:
            # Fenced inside this transaction: the exclusive fence lock is held until commit, so no usage row
            # commits between the watermark and the phase change. Every row above it is the dual run's.
            watermark = usage_event_watermark()
            RelayStream.objects.create(service=service, after_event_id=watermark, delivered_through_id=watermark,
                                       opened_at=now)
        elif phase.phase == Phase.DUAL_RUN:
            watermark = usage_event_watermark()
            RelayStream.objects.filter(service=service, until_event_id__isnull=True).update(until_event_id=watermark)
        phase.phase, phase.changed_at = to_phase, now
        phase.save(update_fields=["phase", "changed_at", "updated_at"])
        shared = _shared_customers()
        if shared:
            raise NotAllowed(f"{shared} customer(s) of a dual-run service also have subscriptions in a service the hub "
                             "bills: their invoices would mix shadow and real lines", code="shared_customers")
        return PhaseChange.objects.create(service=service, from_phase=current.phase, to_phase=to_phase,
                                          reason=reason.strip(), actor=actor, changed_at=now, details=details)


# --------------------------------------------------------------------------- event relay


@dataclass
class RelayResult:
    delivered: int = 0  # Lago events stored (or already known) by this call
    duplicates: int = 0
    failed: int = 0  # rows recorded as RelayFailure
    error: str = ""  # why delivery stopped early (Lago down...)


def _timestamp(us: int) -> str:
    seconds, micros = divmod(us, 1_000_000)
    return str(seconds) if not micros else f"{seconds}.{micros:06d}"


def _lago_events(row) -> list[dict] | str:
    """The Lago events that carry one usage row, or why it cannot be carried."""
    from apps.usage.models import UsageEvent

    base = {"external_subscription_id": row.external_subscription_id, "code": row.code,
            "timestamp": _timestamp(row.timestamp_us)}
    if row.source == UsageEvent.Source.EVENT:
        return [{**base, "transaction_id": row.transaction_id, "properties": row.properties}]
    # A counter (POST /usage) is a quantity; Lago only takes events.
    if row.aggregation_type == "count_agg":
        count = row.value
        if count != count.to_integral_value() or not 0 < count <= BATCH_MAX:
            return f"a count counter of {count} cannot be relayed as 1 to {BATCH_MAX} events"
        return [{**base, "transaction_id": f"{row.transaction_id}#{index}", "properties": row.properties}
                for index in range(1, int(count) + 1)]
    if not row.field_name:
        return f"metric {row.code} has no field to carry the counter's quantity"
    return [{**base, "transaction_id": row.transaction_id,
             "properties": {**row.properties, row.field_name: format(row.value.normalize(), "f")}}]


def relay_client_for(service_id: int) -> LagoClient:
    phase = ServicePhase.objects.get(service_id=service_id)
    return LagoClient(api_url=phase.lago_api_url, api_key=phase.lago_api_key, timeout=15.0)


_RELAY_LOCK = 0x72656C79  # "rely": one deliverer per stream


def relay_deliver(*, stream_id: int, client: LagoClient | None = None, max_batches: int = 100,
                  now: datetime | None = None) -> RelayResult:
    """Deliver a stream's due usage to Lago in id order, in batches of Lago's maximum; return what happened.

    Safe to run twice, late or concurrently (a session lock keeps one deliverer per stream; a second returns at
    once). The watermark moves only past rows Lago stored or already knew (422 `value_already_exist` counts as
    delivered, so a batch sent twice across a timeout is delivered once); rows Lago refuses for another reason
    become RelayFailure rows and the stream moves on. Lago unreachable: nothing moves, the error and the next
    attempt time are kept on the stream.
    """
    from apps.usage.selectors import usage_rows_after
    from apps.usage.services import usage_event_watermark

    result = RelayResult()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_RELAY_LOCK, stream_id])
        if not cursor.fetchone()[0]:
            return result
    try:
        stream = RelayStream.objects.get(pk=stream_id)
        if stream.closed_at is not None:
            return result
        client = client or relay_client_for(stream.service_id)
        upper = stream.until_event_id if stream.until_event_id is not None else usage_event_watermark()
        for _ in range(max_batches):
            rows = usage_rows_after(service_id=stream.service_id, after_id=stream.delivered_through_id,
                                    upto_id=upper, limit=BATCH_MAX)
            if not rows:
                break
            stream.oldest_pending_at = rows[0].created_at
            events, owners, failures = [], [], []
            for row in rows:
                carried = _lago_events(row)
                if isinstance(carried, str):
                    failures.append((row, carried))
                    continue
                if len(events) + len(carried) > BATCH_MAX:
                    break
                events.extend(carried)
                owners.extend([row] * len(carried))
                last = row
            else:
                last = rows[-1]
            try:
                delivered, duplicates, refused = _send(client, events, owners)
            except LagoError as exc:  # unavailable or refused whole: nothing moves
                result.error = str(exc)
                _relay_failed(stream, str(exc), now=now)
                return result
            failures.extend(refused)
            with transaction.atomic():
                RelayFailure.objects.bulk_create(
                    [RelayFailure(stream=stream, usage_event_id=row.id, transaction_id=row.transaction_id, error=error)
                     for row, error in failures], ignore_conflicts=True)
                stream.delivered_through_id = max(last.id if events else 0, *(row.id for row, _ in failures),
                                                  stream.delivered_through_id)
                stream.events_delivered += delivered
                stream.duplicates += duplicates
                stream.last_delivered_at = now or timezone.now()
                stream.attempts, stream.last_error, stream.next_attempt_at = 0, "", None
                stream.save(update_fields=["delivered_through_id", "events_delivered", "duplicates",
                                           "last_delivered_at", "attempts", "last_error", "next_attempt_at",
                                           "oldest_pending_at"])
            result.delivered += delivered
            result.duplicates += duplicates
            result.failed += len(failures)
        else:
            return result  # more left: the next tick continues
        stream.oldest_pending_at = None
        closed = stream.until_event_id is not None and stream.delivered_through_id >= stream.until_event_id
        stream.closed_at = (now or timezone.now()) if closed else None
        stream.save(update_fields=["oldest_pending_at", "closed_at"])
        return result
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_RELAY_LOCK, stream_id])


def _send(client: LagoClient, events: list[dict], owners: list) -> tuple[int, int, list[tuple]]:
    """Send until Lago has stored or knows every event but the refused ones: (delivered, duplicates, refused).

    Lago refuses a batch whole when one event is a duplicate or invalid: known ones count as delivered, invalid
    ones are set aside, and the rest is sent again (each round strictly smaller)."""
    delivered = duplicates = 0
    refused: dict[int, tuple] = {}
    while events:
        outcome = client.events_batch(events)
        if outcome.accepted:
            return delivered + len(events), duplicates, list(refused.values())
        if not outcome.duplicates and not outcome.rejected:
            raise LagoError("Lago refused the batch without saying which events")
        keep_events, keep_owners = [], []
        for index, (event, owner) in enumerate(zip(events, owners)):
            if index in outcome.duplicates:
                delivered += 1
                duplicates += 1
            elif index in outcome.rejected:
                refused.setdefault(owner.id, (owner, f"Lago refused {event['transaction_id']}: {outcome.rejected[index]}"))
            else:
                keep_events.append(event)
                keep_owners.append(owner)
        events, owners = keep_events, keep_owners
    return delivered, duplicates, list(refused.values())


def _relay_failed(stream: RelayStream, error: str, *, now: datetime | None) -> None:
    attempts = stream.attempts + 1
    delay = timedelta(seconds=min(15 * 2 ** (attempts - 1), 900))
    RelayStream.objects.filter(pk=stream.pk).update(
        attempts=attempts, last_error=error[:2000], next_attempt_at=(now or timezone.now()) + delay,
        oldest_pending_at=stream.oldest_pending_at)


def relay_due(*, now: datetime | None = None) -> list[int]:
    """Deliver every open stream whose retry time has come; return the ids handled (the beat's sweeper)."""
    now = now or timezone.now()
    due = RelayStream.objects.filter(closed_at__isnull=True).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)).values_list("pk", flat=True)
    handled = []
    for stream_id in list(due):
        relay_deliver(stream_id=stream_id, now=now)  # Lago's errors are kept on the stream, not raised
        handled.append(stream_id)
    return handled
