"""Tell me when it ends: a POST to a webhook when any auto-pilot run reaches an outcome.

Built only of Prefect's own parts, so it lives in the Prefect server and survives every worker
and shim restart, and shows (and can be edited or paused) on the Prefect UI's Automations page:
a Webhook block holds the URL, and an automation reacting to the auto-pilot flow's run-state
events (`prefect.flow-run.Completed`, `.Failed`, `.Crashed`) calls it with a JSON payload
rendered by the server. A pause (Paused/Suspended) or a resume is not among those events, so it
never fires. Each state event fires once: one POST per outcome.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit
from uuid import UUID

from autopilot.errors import InvalidInput, NotFound
from autopilot.names import ERROR_STEP_LABEL, FLOW_NAME

OUTCOMES = {"completed": "Completed", "failed": "Failed", "crashed": "Crashed"}
NOTIFY_TAG = "autopilot-notify"

# Rendered by the Prefect server (Jinja, with `tojson` and `ui_url`) for each event. The state
# is the event's own (the run may have moved on by the time the payload is rendered: a crashed
# run is restarted at once); error_step is the label the flow writes before it fails.
PAYLOAD_TEMPLATE = """{
  "simulation_id": {{ flow_run.parameters.simulation_id | tojson }},
  "generation": {{ flow_run.parameters.generation | tojson }},
  "flow_run_id": {{ flow_run.id | string | tojson }},
  "status": {{ event.resource["prefect.state-type"] | lower | tojson }},
  "error_step": {{ (flow_run.labels or {}).get("ERROR_STEP_LABEL") | tojson }},
  "error": {% if event.resource["prefect.state-type"] == "COMPLETED" %}null{% else %}{{ event.resource.get("prefect.state-message") | tojson }}{% endif %},
  "ui_url": {{ ((flow_run | ui_url) or ("UI_BASE/runs/flow-run/" ~ flow_run.id)) | tojson }}
}""".replace("ERROR_STEP_LABEL", ERROR_STEP_LABEL)  # noqa: E501


@dataclass(frozen=True)
class Hook:
    """One notification: its automation, where it posts (shown without path or query, which
    often carry a secret), and on which outcomes."""

    id: UUID
    target: str
    outcomes: list[str]


def event_of(state: str) -> str:
    """The event Prefect emits when a flow run enters `state` ("Completed")."""
    return f"prefect.flow-run.{state}"


def parse_outcomes(value: str) -> list[str]:
    chosen = [part.strip().lower() for part in value.split(",") if part.strip()]
    unknown = sorted(set(chosen) - set(OUTCOMES))
    if unknown or not chosen:
        raise InvalidInput(
            f"--on takes a comma-separated list of {', '.join(OUTCOMES)}; got {value!r}",
            error_code="INVALID_OUTCOME",
        )
    return [name for name in OUTCOMES if name in chosen]


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidInput(
            "--webhook must be an http:// or https:// URL with a host",
            error_code="INVALID_WEBHOOK_URL",
        )
    return url


def shown_target(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…" if parts.path.strip("/") else url


def add(url: str, outcomes: list[str]) -> Hook:
    """Create the webhook block and the automation that calls it."""
    from prefect.blocks.webhook import Webhook
    from prefect.client.orchestration import get_client
    from prefect.events.actions import CallWebhook
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.settings import PREFECT_API_URL
    from prefect.types import SecretDict
    from pydantic import SecretStr

    check_url(url)
    block = Webhook(
        method="POST",
        url=SecretStr(url),
        headers=SecretDict({"Content-Type": "application/json"}),
        # The URL is the user's own choice, often on their own network.
        allow_private_urls=True,
    )
    block_name = f"{NOTIFY_TAG}-{uuid.uuid4().hex[:12]}"
    block_id: UUID = block.save(block_name)  # type: ignore[assignment]  # sync in a sync caller
    target = shown_target(url)
    # A server started without PREFECT_UI_URL renders no link: the UI is where the API is.
    ui_base = str(PREFECT_API_URL.value() or "").rstrip("/").removesuffix("/api")
    payload = PAYLOAD_TEMPLATE.replace("UI_BASE", ui_base)
    automation = AutomationCore(
        name=f"auto-pilot: POST {target} on {', '.join(outcomes)}",
        description=f"webhook block {block_name}",
        tags=[NOTIFY_TAG],
        trigger=EventTrigger(
            expect={event_of(OUTCOMES[name]) for name in outcomes},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": FLOW_NAME},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[CallWebhook(block_document_id=block_id, payload=payload)],
    )
    with get_client(sync_client=True) as client:
        automation_id = client.create_automation(automation)
    return Hook(automation_id, target, outcomes)


def hooks() -> list[Hook]:
    """Every notification set up with `add`."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        automations = client.read_automations()
    found = []
    for automation in automations:
        if NOTIFY_TAG not in automation.tags:
            continue
        # The outcomes as the trigger has them now (an edit in the UI included).
        expected: set[str] = getattr(automation.trigger, "expect", set())
        outcomes = [name for name, state in OUTCOMES.items() if event_of(state) in expected]
        target = automation.name.split("POST ", 1)[-1].rsplit(" on ", 1)[0]
        found.append(Hook(automation.id, target, outcomes))
    return found


def remove(hook_id: str) -> Hook:
    """Delete the automation and its webhook block."""
    from prefect.client.orchestration import get_client

    try:
        wanted = UUID(hook_id)
    except ValueError:
        raise InvalidInput(
            f"{hook_id!r} is not a notification id", error_code="INVALID_ID"
        ) from None
    hook = next((h for h in hooks() if h.id == wanted), None)
    if hook is None:
        raise NotFound(f"no notification {hook_id}", error_code="NOTIFICATION_NOT_FOUND")
    with get_client(sync_client=True) as client:
        automation = client.read_automation(wanted)
        client.delete_automation(wanted)
        if automation is not None:
            for action in automation.actions:
                block_id = getattr(action, "block_document_id", None)
                if block_id is not None:
                    client.delete_block_document(block_id)
    return hook
