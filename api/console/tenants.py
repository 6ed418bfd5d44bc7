"""The operator's tenants: each one's names, subscription state and active users, from one
service read (two queries, whatever the number of tenants). An admin is refused (403)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.console import i18n
from api.console.frame import PREFIX, ConsoleRoute, console, render, service_of, viewer_of

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

# tenants.title, .name, .display_name, .subscription, .users and .open are the frame's
i18n.register({
    "tenants.ends": ("契約終了", "Subscription ends"),
    "tenants.count": ("テナント数", "Tenants"),
    "tenants.zone_note": ("日時は {zone} で表示しています。", "Times are shown in {zone}."),
    "tenants.empty": ("テナントはまだありません。", "There are no tenants yet."),
    "tenants.state.active": ("有効", "Active"),
    "tenants.state.grace": ("猶予期間中", "In grace period"),
    "tenants.state.ended": ("終了", "Ended"),
    "tenants.kind.none": ("期限なし", "Open-ended"),
    "tenants.kind.trial": ("試用", "Trial"),
    "tenants.kind.contract": ("契約", "Contract"),
})


@router.get("/tenants", dependencies=[console("operator")])
def tenants_page(request: Request) -> Response:
    summaries = service_of(request).lifecycle.summaries()
    return render(request, "tenants.html", tenants=summaries,
                  zone=viewer_of(request).zone_or(None))
