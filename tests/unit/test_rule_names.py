"""The names the API declares as types are the names the core knows as enums."""

from __future__ import annotations

from typing import get_args

from ca.states import State, StateName
from ca.x509.pkcs12 import Profile, ProfileName


def test_the_state_names_the_api_declares_are_the_states() -> None:
    assert get_args(StateName) == tuple(s.value for s in State)


def test_the_profile_names_the_shells_declare_are_the_profiles() -> None:
    assert get_args(ProfileName) == tuple(p.value for p in Profile)
