"""Loops and schedules are found in each installed app by one reader (config.declarations)."""

from __future__ import annotations

import pytest

import access.schedules
import aws_integration.schedules
from config import declarations, loops, schedules


def test_it_finds_every_apps_loops_and_schedules():
    assert {loop.name for loop in loops.declared_loops()} == {"grant-engine", "events-poller"}
    assert {schedule.name for schedule in schedules.declared_schedules()} == {
        "Portcullis: AWS full syncs",
        "Portcullis: AWS validations",
        "Portcullis: grant sweep",
    }


def test_an_app_without_the_module_declares_nothing():
    assert declarations.declared("no_such_module", "ITEMS", loops.Loop) == []


def test_it_refuses_two_declarations_with_one_name(monkeypatch):
    monkeypatch.setattr(
        aws_integration.schedules,
        "SCHEDULES",
        [*aws_integration.schedules.SCHEDULES, *access.schedules.SCHEDULES],
    )

    with pytest.raises(ValueError, match="Schedules declared twice: Portcullis: grant sweep."):
        schedules.declared_schedules()


def test_it_refuses_a_declaration_that_is_not_of_its_kind(monkeypatch):
    raw = {"name": "Portcullis: x", "func": "x.y", "schedule_type": "D"}
    monkeypatch.setattr(access.schedules, "SCHEDULES", [raw])

    with pytest.raises(TypeError, match="access.schedules.SCHEDULES holds .* not a Schedule"):
        schedules.declared_schedules()


def test_a_module_that_fails_to_import_is_not_taken_for_a_missing_one(monkeypatch):
    def broken(name: str) -> None:
        raise ModuleNotFoundError("No module named 'gone'", name="gone")

    monkeypatch.setattr(declarations.importlib, "import_module", broken)

    with pytest.raises(ModuleNotFoundError, match="gone"):
        declarations.declared("loops", "LOOPS", loops.Loop)
