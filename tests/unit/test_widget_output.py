"""The return format validator: what passes, what fails, and how failures are named."""

from __future__ import annotations

import pytest

from shared.contracts.widget_output import InvalidWidgetOutput, validate_widget_output


def _item(**overrides: object) -> dict[str, object]:
    return {"title": "Jane", "sections": [{"title": "Account", "fields": {"Tier": "Premium"}}], **overrides}


def test_minimal_output_gets_documented_defaults() -> None:
    output = validate_widget_output({"title": "CRM", "items": [_item(badge={"text": "Premium"})]})
    item = output.items[0]
    assert item.collapsible is True
    assert item.sections[0].collapsible is False
    assert item.badge is not None and item.badge.color == "gray"
    assert item.actions == []


def test_full_item_from_the_docs_validates() -> None:
    item = _item(
        subtitle="jane@example.com",
        link="https://crm.example.com/1",
        badge={"text": "Active", "color": "green"},
        actions=[{"label": "View in ERP", "link": "https://erp.example.com/1"}, {"label": "No link"}],
        collapsible=False,
    )
    item["sections"] = [{"title": "Usage", "collapsible": True, "fields": {"API calls": 10, "Ratio": 0.5, "X": None}}]
    output = validate_widget_output({"title": "Subscriptions", "items": [item]})
    assert output.items[0].sections[0].fields == {"API calls": 10, "Ratio": 0.5, "X": None}


def test_empty_items_is_valid() -> None:
    assert validate_widget_output({"title": "CRM", "items": []}).items == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "(root): expected a mapping with 'title' and 'items', got list"),
        ({"items": []}, "title: required field is missing"),
        ({"title": "T", "items": {}}, "items: expected a list"),
        (
            {"title": "T", "items": [_item(sections=[{"title": "S", "fields": []}])]},
            "items[0].sections[0].fields: expected a mapping",
        ),
        (
            {
                "title": "T",
                "items": [_item(), _item(sections=[{"title": "A", "fields": {}}, {"title": "B", "fields": "x"}])],
            },
            "items[1].sections[1].fields: expected a mapping",
        ),
        (
            {"title": "T", "items": [_item(badge={"text": "x", "color": "pink"})]},
            "items[0].badge.color: expected one of",
        ),
        ({"title": "T", "items": [_item(colour="red")]}, "items[0].colour: unknown field"),
        ({"title": 5, "items": []}, "title: expected a string"),
        ({"title": "T", "items": [{"title": "x"}]}, "items[0].sections: required field is missing"),
        (
            {"title": "T", "items": [_item(sections=[{"title": "S", "fields": {"Nested": {"a": 1}}}])]},
            "items[0].sections[0].fields.Nested: expected a string, number, boolean or null, got dict",
        ),
        (
            {"title": "T", "items": [_item(sections=[{"title": "S", "fields": {"Account ID": [1]}}])]},
            "items[0].sections[0].fields['Account ID']: expected a string, number, boolean or null, got list",
        ),
        ({"title": "T", "items": [_item(collapsible="yes")]}, "items[0].collapsible: expected a boolean"),
    ],
)
def test_invalid_output_names_the_exact_path(value: object, message: str) -> None:
    with pytest.raises(InvalidWidgetOutput) as caught:
        validate_widget_output(value)
    assert message in str(caught.value)
