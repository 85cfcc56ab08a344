"""The widget return format from the product docs, as strict pydantic models.

A widget's ``get_sidebar_data`` must return ``{"title", "items"}``; each item
has sections of key-value fields. Defaults (badge colour ``gray``, items
collapsible, sections not) are filled in, so consumers receive one normal form.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from shared.contracts.errors import describe_validation_error

BadgeColor = Literal["blue", "green", "red", "yellow", "gray"]


def _scalar(value: Any) -> Any:
    # bool is an int subclass, so one isinstance covers every accepted scalar.
    if value is None or isinstance(value, str | int | float):
        return value
    raise PydanticCustomError(
        "scalar_type", "expected a string, number, boolean or null, got {kind}", {"kind": type(value).__name__}
    )


FieldValue = Annotated[str | int | float | bool | None, BeforeValidator(_scalar)]


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Badge(_Output):
    text: StrictStr
    color: BadgeColor = "gray"


class Action(_Output):
    label: StrictStr
    link: StrictStr | None = None


class Section(_Output):
    title: StrictStr
    collapsible: StrictBool = False
    fields: dict[StrictStr, FieldValue]


class Item(_Output):
    title: StrictStr
    subtitle: StrictStr | None = None
    link: StrictStr | None = None
    badge: Badge | None = None
    actions: list[Action] = Field(default_factory=list)
    collapsible: StrictBool = True
    sections: list[Section]


class WidgetOutput(_Output):
    title: StrictStr
    items: list[Item]


class InvalidWidgetOutput(ValueError):
    """The value a widget returned does not follow the return format."""


_OUTPUT = TypeAdapter(WidgetOutput)


def validate_widget_output(value: object) -> WidgetOutput:
    """Validate a decoded return value; the error names the exact path."""
    if not isinstance(value, dict):
        raise InvalidWidgetOutput(f"(root): expected a mapping with 'title' and 'items', got {type(value).__name__}")
    try:
        return _OUTPUT.validate_python(value)
    except ValidationError as exc:
        raise InvalidWidgetOutput(describe_validation_error(exc)) from exc


def placeholder_output(widget_name: str) -> WidgetOutput:
    """What the sidebar carries for a widget that failed or timed out."""
    return WidgetOutput(title=widget_name, items=[])
