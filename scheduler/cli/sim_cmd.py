"""``share-scheduler sim``: run the Linq API simulator."""

from __future__ import annotations

import asyncio
import contextlib

import typer

from scheduler.config import E164
from scheduler.sim.server import serve
from scheduler.sim.settings import SimSettings

sim_app = typer.Typer(
    help="A local simulator of the Linq Partner API v3 (for demos, tests and benchmarks).",
    no_args_is_help=True,
)


@sim_app.callback()
def _group() -> None:
    """A local simulator of the Linq Partner API v3."""


def _parse_lines(value: str | None) -> list[str] | None:
    if value is None:
        return None
    numbers = [n.strip() for n in value.split(",") if n.strip()]
    if not numbers:
        raise typer.BadParameter("expected comma-separated E.164 numbers", param_hint="--lines")
    for number in numbers:
        if not E164.fullmatch(number):
            raise typer.BadParameter(
                f"{number!r} is not an E.164 phone number (+ then 8-15 digits)",
                param_hint="--lines",
            )
    return numbers


@sim_app.command("serve")
def serve_command(
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="0 picks a free port."),
    host: str = typer.Option("127.0.0.1", "--host"),
    token: str = typer.Option(
        "sim-token", "--token", envvar="SIM_TOKEN", help="Bearer token clients must send."
    ),
    webhook_url: str | None = typer.Option(
        None, "--webhook-url", help="Where to POST signed webhook events."
    ),
    webhook_secret: str | None = typer.Option(
        None, "--webhook-secret", envvar="SIM_WEBHOOK_SECRET", help="Webhook signing secret."
    ),
    lines: str | None = typer.Option(
        None,
        "--lines",
        help="Comma-separated numbers of the account; others get 403/2005. Default: any.",
    ),
    activation_delay: float = typer.Option(
        5.0, "--activation-delay", min=0, help="Seconds before a written card is active."
    ),
    latency_ms: float = typer.Option(0.0, "--latency-ms", min=0, help="Added to every /v3 call."),
    fault_rate: float = typer.Option(
        0.0, "--fault-rate", min=0, max=1, help="Share calls answered 500/3006 (0..1)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed for faults and ids."),
) -> None:
    """Serve the simulated API at http://HOST:PORT/api/partner until SIGTERM or Ctrl-C."""
    if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
        raise typer.BadParameter("must be an http(s) URL", param_hint="--webhook-url")
    if webhook_url is not None and not webhook_secret:
        raise typer.BadParameter(
            "a webhook URL needs a signing secret (or set SIM_WEBHOOK_SECRET)",
            param_hint="--webhook-secret",
        )
    if not token:
        raise typer.BadParameter("must not be empty", param_hint="--token")
    settings = SimSettings(
        token=token,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        lines=_parse_lines(lines),
        activation_delay=activation_delay,
        latency_ms=latency_ms,
        share_fault_rate=fault_rate,
        seed=seed,
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(settings, host=host, port=port))
    except OSError as exc:
        typer.echo(f"sim: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from exc
