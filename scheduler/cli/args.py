"""Command-line arguments checked by the same rules as every other way in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from scheduler import validate


def _checked(check: Callable[[str], str]) -> Callable[[str | None], str | None]:
    def callback(value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check(value)
        except validate.InvalidValue as exc:
            # typer answers a BadParameter with the usage line and exit 2.
            raise typer.BadParameter(str(exc)) from exc

    return callback


chat_id_callback = _checked(validate.check_identifier)
phone_number_callback = _checked(validate.check_phone_number)

ChatIdArgument = Annotated[
    str,
    typer.Argument(
        help="The chat id (Linq's), or a prefix naming one chat.",
        show_default=False,
        callback=chat_id_callback,
    ),
]
PhoneNumberArgument = Annotated[
    str,
    typer.Argument(
        help="The line's phone number, E.164 (e.g. +14155550100).",
        show_default=False,
        callback=phone_number_callback,
    ),
]
