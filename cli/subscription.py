"""`tegata tenant subscription set|show`: a tenant's trial or contract."""

from __future__ import annotations

from typing import Annotated

import typer

from ca import present
from ca.errors import InvalidInput
from ca.service import DEFAULT_TENANT, SubscriptionView
from cli.context import STATE, emit
from cli.options import JsonOpt, TenantOpt

subscription_app = typer.Typer(no_args_is_help=True, help="A tenant's trial or contract.")


def _subscription_dict(view: SubscriptionView) -> dict[str, object]:
    return present.subscription(view)


@subscription_app.command("set")
def subscription_set(
    ends: Annotated[str | None, typer.Option(help="Last day of service, YYYY-MM-DD; "
                                             "'none' for open-ended.")] = None,
    grace_days: Annotated[int | None, typer.Option(help="Days suspended before revocation "
                                                   "(default 30).")] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="Zone of the end date (default: "
                                           "the tenant's).")] = None,
    trial: Annotated[bool, typer.Option("--trial", help="A trial, not a contract.")] = False,
    allow_past: Annotated[bool, typer.Option(
        "--allow-past", help="Accept an end date already past: every certificate is "
        "suspended now and revoked a full grace period later unless the end is corrected; "
        "with 0 grace days, every certificate is revoked and its key purged now. Without it "
        "such a date is refused (exit 2), saying which of the two it would be.")] = False,
    tenant: TenantOpt = DEFAULT_TENANT,
    as_json: JsonOpt = False,
) -> None:
    """Set when the tenant's subscription ends; renewing within the grace period brings
    suspended certificates back."""
    from ca import expiry

    date = None
    if ends not in (None, "none"):
        try:
            date = expiry.parse_date(ends or "")
        except InvalidInput:
            raise InvalidInput(f"subscription end {(ends or '')[:32]!r} is not a date of the "
                               "form YYYY-MM-DD", field="ends") from None
    view = STATE.service().lifecycle.set_subscription(tenant, ends=date, zone=tz,
                                                      grace_days=grace_days,
                                                      kind="trial" if trial else "contract",
                                                      allow_past=allow_past)
    data = _subscription_dict(view)
    emit(data, as_json=as_json, text="\n".join(f"{k:14} {v}" for k, v in data.items()))


@subscription_app.command("show")
def subscription_show(tenant: TenantOpt = DEFAULT_TENANT, as_json: JsonOpt = False) -> None:
    """Show the tenant's subscription and its state (active, grace, ended)."""
    data = _subscription_dict(STATE.service().lifecycle.get_subscription(tenant))
    emit(data, as_json=as_json, text="\n".join(f"{k:14} {v}" for k, v in data.items()))
