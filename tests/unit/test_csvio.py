"""Spreadsheet-safe cells: ``unquote_cell`` undoes exactly what ``safe_cell`` added."""

from __future__ import annotations

import pytest

from ca.csvio import safe_cell, unquote_cell


@pytest.mark.parametrize("value", ["=SUM(1)", "+81 3 1234", "-1+2", "@cmd", "'quoted",
                                   "''twice", "'t Hart", "' OR 1=1 --", "plain", ""])
def test_every_value_survives_export_and_import(value: str) -> None:
    assert unquote_cell(safe_cell(value)) == value


@pytest.mark.parametrize("typed", ["'t Hart", "' OR 1=1 --", "'plain"])
def test_a_leading_apostrophe_that_safe_cell_did_not_add_is_kept(typed: str) -> None:
    # a hand-written CSV: the apostrophe is part of the name, not a spreadsheet text marker
    assert unquote_cell(typed) == typed


def test_the_text_marker_before_a_formula_is_removed() -> None:
    assert unquote_cell("'=HYPERLINK(1)") == "=HYPERLINK(1)"
