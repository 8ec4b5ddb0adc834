"""Every name derived from a simulation id: one module, one rule, no two ids share a name.

Prefect's namespaces are narrower than our ids (letters, digits, `_ . : -`): variable names
allow `[a-z0-9_-]`, artifact keys `[a-z0-9-]`, and cache keys become file names (no `/`, and
a case-insensitive disk must not merge `Sim` with `sim`). Mapping punctuation to `-` made
`col.lide1` and `col-lide1` share checkpoints. Instead each id is *escaped* into a token over
`[a-z0-9-]` that can be decoded again:

    a-z 0-9  → themselves            A-Z → `-` + lowercase letter
    `-` → `-0`   `_` → `-1`   `.` → `-2`   `:` → `-3`

So `-` in a token is always followed by one of `[0-3a-z]`: a token never contains `--` and
never ends in `-`. Every name puts a fixed prefix before the token and a `--`-led suffix after
it, so names of different ids, and names of different kinds, cannot coincide. A token longer
than `MAX_TOKEN` (ids of 80+ capitals or punctuation) is cut at a unit boundary and ends in
`-9` + 24 hex digits of the id's SHA-256: `-9` never occurs in an escaped token, so the two
forms are disjoint, and long forms differ unless SHA-256 collides.

Tags, flow-run and task-run names carry the id itself: Prefect allows any text there, and a
person filtering the UI by simulation types the id they know.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from uuid import UUID

PREFIX = "autopilot"
SIMULATION_TAG_PREFIX = "autopilot-sim:"
AUTOPILOT_TAG = "autopilot"
GENERATION_TAG_PREFIX = "generation:"
# Cache keys are file names (255 bytes); variable names are at most 255 characters.
MAX_TOKEN = 160
_HASH_DIGITS = 24

_PUNCTUATION = {"-": "0", "_": "1", ".": "2", ":": "3"}
_UNPUNCTUATION = {code: char for char, code in _PUNCTUATION.items()}
SIMULATION_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")


def is_valid_simulation_id(simulation_id: str) -> bool:
    """Ids go into backend URLs and Prefect names: letters, digits, `_ . : -` only."""
    return SIMULATION_ID_PATTERN.match(simulation_id) is not None


def _escape(char: str) -> str:
    if char in _PUNCTUATION:
        return "-" + _PUNCTUATION[char]
    if "A" <= char <= "Z":
        return "-" + char.lower()
    if ("a" <= char <= "z") or ("0" <= char <= "9"):
        return char
    raise ValueError(f"not a simulation id character: {char!r}")


def simulation_token(simulation_id: str) -> str:
    """The id escaped into `[a-z0-9-]`, decodable, at most `MAX_TOKEN` characters."""
    units = [_escape(char) for char in simulation_id]
    token = "".join(units)
    if len(token) <= MAX_TOKEN:
        return token
    digest = hashlib.sha256(simulation_id.encode()).hexdigest()[:_HASH_DIGITS]
    budget = MAX_TOKEN - 2 - _HASH_DIGITS
    head, used = [], 0
    for unit in units:
        if used + len(unit) > budget:
            break
        head.append(unit)
        used += len(unit)
    return "".join(head) + "-9" + digest


def decode_token(token: str) -> str | None:
    """The id an escaped (not shortened) token stands for; None for a shortened one."""
    chars, index = [], 0
    while index < len(token):
        char = token[index]
        if char != "-":
            chars.append(char)
            index += 1
            continue
        code = token[index + 1]
        if code == "9":
            return None
        chars.append(_UNPUNCTUATION.get(code) or code.upper())
        index += 2
    return "".join(chars)


def new_generation_id() -> str:
    """A generation's identity: random, so a lost database can never make it repeat."""
    return secrets.token_hex(6)


# -- Prefect names ------------------------------------------------------------------------


def variable_name(simulation_id: str) -> str:
    """The per-simulation variable (mode, generation)."""
    return f"{PREFIX}-{simulation_token(simulation_id)}"


def progress_artifact_key(simulation_id: str) -> str:
    """The key of the simulation's progress artifacts."""
    return f"{PREFIX}-{simulation_token(simulation_id)}"


def report_artifact_key(simulation_id: str) -> str:
    """The key of the simulation's report artifacts."""
    return f"{PREFIX}-{simulation_token(simulation_id)}--report"


def rounds_artifact_key(simulation_id: str) -> str:
    """The key of the simulation's per-round table artifacts (the report's chart, as data)."""
    return f"{PREFIX}-{simulation_token(simulation_id)}--rounds"


def claim_artifact_key(simulation_id: str) -> str:
    """The key of the artifacts by which runs claim the simulation (one active run)."""
    return f"{PREFIX}-{simulation_token(simulation_id)}--claim"


def step_cache_key(
    simulation_id: str, generation: int, generation_id: str, step: str, attempt: str = ""
) -> str:
    """A step's checkpoint: per generation (identity included), or per attempt if given."""
    key = f"{PREFIX}-{simulation_token(simulation_id)}--g{generation}-{generation_id}--{step}"
    return f"{key}--{attempt}" if attempt else key


def idempotency_key(simulation_id: str, generation: int, generation_id: str, attempt: int) -> str:
    """One flow run per simulation, generation and attempt, however many starts race."""
    return f"{PREFIX}-{simulation_token(simulation_id)}--g{generation}-{generation_id}--a{attempt}"


# The flow's name in Prefect (deployments are `auto-pilot/<name>`).
FLOW_NAME = "auto-pilot"
# The flow-run label a running attempt renews to prove it is alive (autopilot/liveness.py).
LEASE_LABEL = "autopilot.lease"
# The flow-run label naming the step a failed run failed at (for notifications: notify.py).
ERROR_STEP_LABEL = "autopilot.error_step"
# The last step a flow run executed (not a cache hit), written as each one ends: manual mode's
# waits must not depend on the task-run records, which a killed process may not have sent.
EXECUTED_STEPS_LABEL = "autopilot.executed_steps"
# A `--`-led suffix after a fixed word: no simulation's variable (no `--`) can share it.
TAKEOVER_PREFIX = f"{PREFIX}-takeover--"


def takeover_variable_name(state_id: UUID, round_: int = 0) -> str:
    """The variable whose creation claims the takeover of a run in the state `state_id`: names
    are unique, so of several hosts judging one state dead exactly one creates it. A claim
    whose holder died before acting goes stale; the next claim of that state is `round_` + 1."""
    return f"{TAKEOVER_PREFIX}{state_id.hex}-{round_}"


def simulation_tag(simulation_id: str) -> str:
    """The tag every auto-pilot run of the simulation carries (filter the UI by it)."""
    return f"{SIMULATION_TAG_PREFIX}{simulation_id}"


def generation_tag(generation: int) -> str:
    return f"{GENERATION_TAG_PREFIX}{generation}"


def run_tags(simulation_id: str, generation: int) -> list[str]:
    """The tags of an auto-pilot run."""
    return [AUTOPILOT_TAG, simulation_tag(simulation_id), generation_tag(generation)]


def simulation_of_tag(tag: str) -> str | None:
    """The simulation id a tag names, if it is a simulation tag."""
    return (
        tag.removeprefix(SIMULATION_TAG_PREFIX) if tag.startswith(SIMULATION_TAG_PREFIX) else None
    )


# The flow's and tasks' run-name templates (Prefect fills them from the parameters).
FLOW_RUN_NAME = "{simulation_id}-g{generation}"


def task_run_name(step: str) -> str:
    """`{step}-{simulation_id}-g{generation}`: every log line names the step and simulation."""
    return step + "-{ctx.simulation_id}-g{ctx.generation}"


def step_of_task_run(name: str) -> str:
    """The step a task run name (see `task_run_name`) belongs to; steps contain no `-`."""
    return name.split("-", 1)[0]


# A manual-mode wait before a step is a suspension with this pause key: status tells it from
# a person's pause (a random key), and Prefect never suspends twice on one key in a run.
# Prefect builds the run-input keys from it: lowercase letters, digits and dashes only.
CONFIRM_KEY_PREFIX = f"{PREFIX}-confirm-"


def confirm_key(step: str) -> str:
    return CONFIRM_KEY_PREFIX + step.replace("_", "-")


def step_awaiting_confirmation(pause_key: str | None) -> str | None:
    """The step a suspended run waits to be confirmed for (None: not such a wait)."""
    if pause_key is None or not pause_key.startswith(CONFIRM_KEY_PREFIX):
        return None
    return pause_key.removeprefix(CONFIRM_KEY_PREFIX).replace("-", "_")


def crashpoint_dir_name(simulation_id: str) -> str:
    """The folder of a simulation's armed crash points."""
    return simulation_token(simulation_id)
