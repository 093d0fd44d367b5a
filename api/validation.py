"""The API validates input with the browser's own forms, so a field means and allows the
same thing in both; a refused field answers 400 naming it."""

from __future__ import annotations

from typing import Any

from django import forms


class InputError(Exception):
    """Fields refused, by name: {"title": ["Ensure this value has at most 200 characters."]}."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{field}: {' '.join(m)}" for field, m in errors.items()))
        self.errors = errors


def validated(form_class: type[forms.Form], data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    form = form_class(data=data, **kwargs)
    if not form.is_valid():
        raise InputError(
            {
                ("input" if field == "__all__" else field): [str(m) for m in messages]
                for field, messages in form.errors.items()
            }
        )
    return dict(form.cleaned_data)
