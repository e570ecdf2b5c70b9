"""``share-scheduler webhooks list|ensure``: the Linq webhook subscription of the daemon.

``ensure`` creates or updates the one subscription of ``--url`` so that it carries exactly the
event types the daemon reads, for the configured lines, and is active; a second run changes
nothing. Linq shows a subscription's signing secret once, when it is created: ``ensure``
prints it then (on stdout only), with where the daemon reads it from. It is never logged and
never written to the ledger.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import urlsplit

import structlog
import typer

from scheduler.cli.common import ConfigOption, JsonOption, print_json, print_table
from scheduler.cli.context import CommandContext
from scheduler.config import Schedule
from scheduler.ingest.subscriptions import SubscriptionPlan, plan_subscription
from scheduler.linq.client import LinqClient
from scheduler.linq.types import WebhookSubscription
from scheduler.logs import register_secrets

log = structlog.get_logger("scheduler.cli.webhooks")


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise typer.BadParameter(f"{value!r} is not an https:// URL (Linq delivers over HTTPS)")
    if parts.username or parts.password:
        raise typer.BadParameter("the URL must not carry credentials")
    return value


UrlOption = Annotated[
    str,
    typer.Option(
        "--url",
        help="The public https:// URL of the daemon's POST /webhooks/linq.",
        callback=_url,
        show_default=False,
    ),
]


def _load(ctx: CommandContext, what: str) -> tuple[Schedule, LinqClient]:
    schedule, api_key = ctx.schedule_with_api(what, quiet=True, missing="give --config FILE")
    return schedule, LinqClient.from_config(schedule.linq, api_key)


def _as_dict(sub: WebhookSubscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        "target_url": sub.target_url,
        "is_active": sub.is_active,
        "subscribed_events": list(sub.subscribed_events),
        "phone_numbers": list(sub.phone_numbers),
        "created_at": sub.created_at,
        "updated_at": sub.updated_at,
    }


def list_subscriptions(config: ConfigOption = None, json: JsonOption = False) -> None:
    """The account's webhook subscriptions (never their signing secrets: Linq shows none)."""
    ctx = CommandContext.of(config, json=json)
    _, client = _load(ctx, "webhooks list")

    async def work() -> list[WebhookSubscription]:
        async with client:
            return await client.list_webhook_subscriptions()

    subs = asyncio.run(work())
    if ctx.json:
        print_json([_as_dict(s) for s in subs])
        return
    print_table(
        f"{len(subs)} webhook subscription(s)",
        ["id", "target url", "active", "events", "lines"],
        [
            [
                s.id,
                s.target_url,
                "yes" if s.is_active else "no",
                str(len(s.subscribed_events)),
                ", ".join(s.phone_numbers) or "all",
            ]
            for s in subs
        ],
    )


def _storage_hint(schedule: Schedule) -> str:
    hooks = schedule.webhooks
    places = [f"the environment variable {name}" for name in hooks.secret_envs[:1]]
    places += [f"the file {path}" for path in hooks.secret_files[:1]]
    where = " or ".join(places) or "webhooks.secret_envs / webhooks.secret_files"
    return (
        f"Store it where the daemon reads it: {where} (webhooks.secret_envs / "
        "webhooks.secret_files in the schedule), then restart or reload the daemon. While "
        "replacing a secret, configure both the old and the new one until Linq signs only "
        "with the new one."
    )


def ensure(url: UrlOption, config: ConfigOption = None, json: JsonOption = False) -> None:
    """Create or update the subscription of --url: the daemon's event types, for its lines."""
    ctx = CommandContext.of(config, json=json)
    schedule, client = _load(ctx, "webhooks ensure")
    lines = [line.number for line in schedule.lines]

    async def work() -> tuple[SubscriptionPlan, WebhookSubscription, str | None]:
        async with client:
            existing = await client.list_webhook_subscriptions()
            plan = plan_subscription(existing, url, lines)
            if plan.action == "create":
                created = await client.create_webhook_subscription(
                    url, list(plan.events), list(plan.phone_numbers) or None
                )
                secret = created.signing_secret.get_secret_value()
                # From here on, any log line or error quoting it shows [redacted].
                register_secrets([secret])
                log.info("webhook_subscription.created", subscription_id=created.id)
                return plan, created, secret
            assert plan.subscription_id is not None
            if plan.action == "update":
                updated = await client.update_webhook_subscription(
                    plan.subscription_id,
                    events=list(plan.events) if "subscribed_events" in plan.changes else None,
                    # [] clears the filter: every line.
                    phone_numbers=(
                        list(plan.phone_numbers) if "phone_numbers" in plan.changes else None
                    ),
                    is_active=True if "is_active" in plan.changes else None,
                )
                log.info(
                    "webhook_subscription.updated",
                    subscription_id=updated.id,
                    changes=list(plan.changes),
                )
                return plan, updated, None
            return plan, next(s for s in existing if s.id == plan.subscription_id), None

    plan, sub, secret = asyncio.run(work())
    if ctx.json:
        shown: dict[str, Any] = {"action": plan.action, "changes": list(plan.changes)}
        shown["subscription"] = _as_dict(sub)
        if secret is not None:
            shown["signing_secret"] = secret
            shown["store_secret"] = _storage_hint(schedule)
        print_json(shown)
        return
    lines_text = ", ".join(plan.phone_numbers) or "every line"
    if plan.action == "create":
        typer.echo(f"created webhook subscription {sub.id} for {url} ({lines_text})")
        typer.echo("signing secret (Linq shows it only this once):")
        typer.echo(f"  {secret}")
        typer.echo(_storage_hint(schedule))
    elif plan.action == "update":
        typer.echo(
            f"updated webhook subscription {sub.id} for {url}: {', '.join(plan.changes)} "
            f"({lines_text}); its signing secret is unchanged"
        )
    else:
        typer.echo(f"webhook subscription {sub.id} for {url} is up to date ({lines_text})")
