"""Every derived name: distinct valid ids never share a name of any kind (property tests)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot import names

FIRST = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
REST = FIRST + "_.:-"

# Short ids over a small alphabet collide under lossy mappings quickly (`a.b` / `a-b` /
# `A_b`); long ones reach the shortened (hashed) token form.
short_ids = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("aAbB0"),
    st.text(alphabet="aAbB0_.:-", max_size=6),
)
any_ids = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(FIRST),
    st.text(alphabet=REST, max_size=199),
)
ids = st.one_of(short_ids, any_ids)


def every_name(simulation_id: str) -> dict[str, set[str]]:
    """The names of one id, grouped by the Prefect namespace they live in."""
    steps = ["preparing", "starting", "monitoring", "generating_report", "completed"]
    return {
        "variable": {names.variable_name(simulation_id)},
        "artifact": {
            names.progress_artifact_key(simulation_id),
            names.report_artifact_key(simulation_id),
            names.rounds_artifact_key(simulation_id),
            names.claim_artifact_key(simulation_id),
        },
        "result": {names.step_cache_key(simulation_id, 3, "0a1b2c3d4e5f", s) for s in steps}
        | {names.step_cache_key(simulation_id, 3, "0a1b2c3d4e5f", "starting", "run1")},
        "idempotency": {names.idempotency_key(simulation_id, 3, "0a1b2c3d4e5f", 1)},
        "tag": {names.simulation_tag(simulation_id)},
        "crashpoint": {names.crashpoint_dir_name(simulation_id)},
    }


@settings(max_examples=3000)
@given(ids, ids)
def test_distinct_ids_never_share_a_name(first: str, second: str):
    if first == second:
        return
    for kind, mine in every_name(first).items():
        theirs = every_name(second)[kind]
        assert not mine & theirs, f"{first!r} and {second!r} share a {kind} name"


@settings(max_examples=1000)
@given(ids)
def test_names_of_one_id_are_distinct_within_each_namespace(simulation_id: str):
    grouped = every_name(simulation_id)
    assert len(grouped["artifact"]) == 4
    assert len(grouped["result"]) == 6


@settings(max_examples=2000)
@given(ids)
def test_names_fit_prefect_and_the_disk(simulation_id: str):
    token = names.simulation_token(simulation_id)
    assert re.fullmatch(r"[a-z0-9-]+", token) and "--" not in token
    assert not token.endswith("-") and len(token) <= names.MAX_TOKEN
    assert re.fullmatch(r"[a-z0-9_-]{1,255}", names.variable_name(simulation_id))
    for key in every_name(simulation_id)["artifact"]:
        assert re.fullmatch(r"[a-z0-9-]+", key)
    for key in every_name(simulation_id)["result"]:
        assert "/" not in key and "." not in key and len(key.encode()) <= 200


@settings(max_examples=2000)
@given(ids)
def test_an_escaped_token_decodes_to_its_id(simulation_id: str):
    decoded = names.decode_token(names.simulation_token(simulation_id))
    assert decoded in (simulation_id, None)
    if len(simulation_id) <= 80:  # at most 160 escaped characters: never shortened
        assert decoded == simulation_id


def test_the_ids_that_used_to_collide_get_their_own_names():
    first, second = "col.lide1", "col-lide1"
    assert names.step_cache_key(first, 0, "g", "starting") != names.step_cache_key(
        second, 0, "g", "starting"
    )
    assert names.progress_artifact_key(first) != names.progress_artifact_key(second)
    assert names.variable_name("Sim") != names.variable_name("sim")
    assert names.progress_artifact_key("xReport") != names.report_artifact_key("x")


def test_ids_are_validated_as_documented():
    assert names.is_valid_simulation_id("sim_0123abcd.x:y-z")
    assert not names.is_valid_simulation_id("-leading-dash")
    assert not names.is_valid_simulation_id("a/b")
    assert not names.is_valid_simulation_id("a" * 201)
