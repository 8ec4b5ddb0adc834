"""`autopilot chaos`: kill processes at random moments and prove every side effect happened once.

Each trial runs one auto-pilot end to end against the bundled simulator (driven through the
REST shim, as the frontend does) and SIGKILLs one target at a uniformly random moment of its
lifecycle: `flow` (the flow process), `worker` (the serving process, alone or with its flow
processes), `shim`, `simulator` (the simulator server) or `prefect` (the Prefect server). The
supervisor restarts what it supervises, as in `autopilot up`. With `hosts` > 1 every host is a
worker of its own (identity, data dir, process group) serving the one deployment, and `host`
kills the host executing the run, worker and flow processes, and brings it back only after
`host_down` seconds: another host must notice through the run's lease and take it over.
Deterministic injection trials add: a crash after the simulation accepted the start but
before the step's result is persisted (`flow@start-accepted`), after the report is done but
before completion is recorded (`flow@report-done`), and between the pause request and the
run's suspension (`flow@pause-window`, then resume).

With `manual` > 0 that share of the trials run in manual mode: the harness confirms (resumes)
each wait between two steps as soon as status shows it, and kills fall anywhere, waits included.
With `restarts` > 0 that share of the trials are restarts from a step: the auto-pilot runs
undisturbed to completion (to monitoring, for `monitoring`), is started again with
`force from_step=starting|monitoring|generating_report`, and the kill falls in the restart.

Invariants checked per trial from the simulator's ledger and the status history: exactly one
simulation start, one report and one preparation (a restart adds exactly what its step and
the later ones do again, and never a stop); the auto-pilot ends `completed`; the round counter
of a simulation run never goes backwards. Recovery time is from the kill to the next change of the
auto-pilot's own progress (step, step progress or round as Prefect records it).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from autopilot.devstack import pieces
from autopilot.devstack.supervisor import Supervisor
from autopilot.errors import InvalidInput
from autopilot.settings import Settings

TARGETS = ("flow", "worker", "shim", "simulator", "prefect")
HOST_TARGET = "host"
INJECTIONS = ("flow@start-accepted", "flow@report-done", "flow@pause-window")
RESTART_STEPS = ("starting", "monitoring", "generating_report")
MONITORED_ROUND_SECONDS = 0.5
FAST_WORKER = {"AUTOPILOT_POLL_INTERVAL": "0.25", "AUTOPILOT_CONTROL_CHECK_INTERVAL": "0.25"}
FAST_SIMULATOR = {"round_seconds": 0.1, "prepare_seconds": 0.5, "report_seconds": 0.5}
FINAL = {"completed", "failed"}
# Many hosts: leases at test speed (a takeover within ~10 s) and 1 s sweeps.
FAST_LEASES = {"AUTOPILOT_LEASE_RENEW_EVERY": "1", "AUTOPILOT_LEASE_WINDOW": "8"}


class TrialsAborted(Exception):
    """The harness was interrupted: a trial under way stops looking."""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Trial:
    """One auto-pilot, one kill, and what was checked."""

    number: int
    target: str
    from_step: str | None = None
    manual: bool = False
    simulation_id: str = ""
    kill_at: float | None = None
    killed: str = ""
    recovery: float | None = None
    duration: float = 0.0
    final_status: str = ""
    violations: list[str] = field(default_factory=list)


def draw_restarts(rng: random.Random, trials: int, share: float) -> list[str | None]:
    """Which trials restart from which step (drawing nothing when none do, so the plans of
    earlier seeds stay as they were)."""
    if not share:
        return [None] * trials
    return [rng.choice(RESTART_STEPS) if rng.random() < share else None for _ in range(trials)]


def draw_manual(rng: random.Random, trials: int, share: float) -> list[bool]:
    """Which trials run in manual mode (drawn after the restarts, likewise only if asked)."""
    if not share:
        return [False] * trials
    return [rng.random() < share for _ in range(trials)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def expected_side_effects(from_step: str | None, reports_before: int = 0) -> dict[str, int]:
    """The ledger of a trial: one of each, plus what a restart at `from_step` does again
    (after the first run completed; a restart at monitoring watches the first run's, and
    makes the one report, after any the first run had asked for: `reports_before`)."""
    again = {"starting": ("start", "report"), "generating_report": ("report",)}.get(
        from_step or "", ()
    )
    expected = {action: 1 + (action in again) for action in ("prepare", "start", "report")}
    if from_step == "monitoring":
        expected["report"] = reports_before + 1
    if from_step is not None:
        expected["stop"] = 0  # a restart never stops the simulation it takes over
    return expected


def check_invariants(
    ledger: dict[str, int],
    final_status: str,
    rounds: list[tuple[str | None, int]],
    from_step: str | None = None,
    reports_before: int = 0,
) -> list[str]:
    """Pure: the violations of one trial (`rounds`: the backend run's start and round, as
    polled; `reports_before`: the reports in the ledger when a restart was asked for)."""
    violations = []
    for action, count in expected_side_effects(from_step, reports_before).items():
        if ledger.get(action, 0) != count:
            violations.append(f"{action} x{ledger.get(action, 0)}")
    # A report asked for again is deduplicated by the backend, but still a repeated call.
    if ledger.get("report_repeat", 0):
        violations.append(f"report asked again x{ledger['report_repeat']}")
    if final_status != "completed":
        violations.append(f"ended {final_status or 'unknown'}")
    if any(
        run == later_run and later < earlier
        for (run, earlier), (later_run, later) in zip(rounds, rounds[1:], strict=False)
    ):
        violations.append("round counter went backwards")
    return violations


class Chaos:
    """Runs the trials against a private stack in a temporary directory."""

    def __init__(
        self,
        trials: int,
        seed: int,
        targets: list[str],
        rounds: int = 12,
        console: Console | None = None,
        timeout: float = 240.0,
        parallel: int = 1,
        hosts: int = 1,
        host_down: float = 30.0,
        db: str = "sqlite",
        restarts: float = 0.0,
        manual: float = 0.0,
    ) -> None:
        known = TARGETS + INJECTIONS + ((HOST_TARGET,) if hosts > 1 else ())
        unknown = set(targets) - set(known)
        if unknown:
            hint = " (`host` needs --hosts 2 or more)" if HOST_TARGET in unknown else ""
            raise InvalidInput(
                f"unknown targets {sorted(unknown)}; known: {', '.join(known)}{hint}"
            )
        if db not in ("sqlite", "postgres"):
            raise InvalidInput(f"unknown database {db!r}; known: sqlite, postgres")
        for name, share in (("restarts", restarts), ("manual", manual)):
            if not 0.0 <= share <= 1.0:
                raise InvalidInput(f"{name} is a share of the trials, 0 to 1, not {share}")
        self.restarts = restarts
        self.manual = manual
        self.hosts = hosts
        self.host_down = host_down
        self.db = db
        self.trials = trials
        self.rng = random.Random(seed)
        self.targets = targets
        self.rounds = rounds
        self.console = console or Console()
        self.timeout = timeout
        self.parallel = max(1, parallel)
        self.workdir = Path(tempfile.mkdtemp(prefix="autopilot-chaos-"))
        self.settings = Settings(
            data_dir=self.workdir,
            backend_url=f"http://127.0.0.1:{free_port()}",
            api_port=free_port(),
        )
        self.supervisor = Supervisor(
            self.settings,
            prefect_port=free_port(),
            own_simulator=True,
            simulator_options=FAST_SIMULATOR,
            worker_env={**FAST_WORKER, **(FAST_LEASES if hosts > 1 else {})},
            stable_after=3.0,
            hosts=hosts,
            worker_args=("--sweep-seconds", "1") if hosts > 1 else (),
        )
        self.shim = httpx.Client(base_url=f"http://127.0.0.1:{self.settings.api_port}", timeout=30)
        self.backend = httpx.Client(base_url=self.settings.backend_url, timeout=10)
        self._aborted = threading.Event()
        # Set when Ctrl-C or SIGTERM ended the run early: the trials done are still reported.
        self.interrupted = False

    def _sleep(self, seconds: float) -> None:
        """Wait between looks; a trial ends here once the harness is interrupted."""
        if self._aborted.wait(seconds):
            raise TrialsAborted

    # -- talking to the stack while parts of it are dead -----------------------------

    def _shim(self, endpoint: str, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Call the shim, retrying while it (or Prefect behind it) is down."""
        while True:
            try:
                response = self.shim.post(f"/api/simulation/auto-pilot/{endpoint}", json=body)
                if response.status_code < 500:
                    payload: dict[str, Any] = response.json()
                    return payload
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"shim {endpoint} unavailable")
            self._sleep(0.2)

    def _backend_get(self, path: str, **params: Any) -> dict[str, Any] | None:
        try:
            response = self.backend.get(path, params=params)
            data: dict[str, Any] = response.json()["data"]
            return data
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    def _ledger(self, simulation_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """The simulator's ledger; waits while the simulator is down (it may just have been
        killed), so a dead simulator never reads as "nothing happened"."""
        deadline = time.monotonic() + timeout
        while True:
            ledger = self._backend_get("/api/sim/ledger", simulation_id=simulation_id)
            if ledger is not None or time.monotonic() > deadline:
                return ledger or {}
            self._sleep(0.2)

    def _create_simulation(self, number: int, round_seconds: float | None = None) -> str:
        deadline = time.monotonic() + 60
        fields: dict[str, Any] = {"agents": 20, "total_simulation_hours": self.rounds}
        if round_seconds is not None:
            fields["round_seconds"] = round_seconds
        while True:
            try:
                response = self.backend.post(
                    "/api/simulation/create", json={**fields, "seed": number}
                )
                return str(response.json()["data"]["simulation_id"])
            except (httpx.HTTPError, KeyError, ValueError):
                if time.monotonic() > deadline:
                    raise
                self._sleep(0.2)

    # -- killing -------------------------------------------------------------------

    def _child(self, name: str) -> Any:
        return next(c for c in self.supervisor.children if c.name == name)

    def _data_dirs(self) -> list[tuple[Path, str | None]]:
        """Each host's data dir and identity (one host: the harness's own, this host)."""
        if self.hosts <= 1:
            return [(self.workdir, None)]
        return [(self.supervisor.host_data_dir(i), f"host{i}") for i in range(1, self.hosts + 1)]

    def _executor(self, flow_run_id: str | None) -> tuple[int, str | None] | None:
        """The living flow process of the run and its host, on whichever host it runs."""
        from autopilot.worker.executors import living_executor

        for data_dir, host in self._data_dirs():
            pid = living_executor(data_dir, flow_run_id, host) if flow_run_id else None
            if pid is not None:
                return pid, host
        return None

    def _kill(self, target: str, flow_run_id: str | None, worker_alone: bool = False) -> str:
        if target.startswith("flow") or target == HOST_TARGET:
            # The moment may fall before the run's process exists: kill it as soon as it does.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                executor = self._executor(flow_run_id)
                if executor is not None:
                    pid, host = executor
                    if target == HOST_TARGET:
                        return self._kill_host(host)
                    os.kill(pid, signal.SIGKILL)
                    return f"flow pid {pid}"
                self._sleep(0.05)
            return "no flow process alive"
        if target == "worker" and self.hosts > 1:
            executor = self._executor(flow_run_id)
            target = f"worker-{executor[1]}" if executor else "worker-host1"
        name = {"worker": "worker", "shim": "api", "simulator": "simulator"}.get(target, target)
        proc = self._child(name).proc
        if proc is None or proc.poll() is not None:
            return f"{name} already down"
        if target.startswith("worker") and worker_alone:
            os.kill(proc.pid, signal.SIGKILL)  # its flow processes outlive it
            return "worker alone"
        os.killpg(proc.pid, signal.SIGKILL)
        return f"{name} process group"

    def _kill_host(self, host: str | None) -> str:
        """SIGKILL every process of the host (its worker's group and its flow processes,
        which may have outlived an earlier worker), and keep it down for `host_down` s."""
        child = self._child(f"worker-{host}")
        child.down_until = time.monotonic() + self.host_down
        if child.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGKILL)
        for pid in pieces.processes_of_host(host or ""):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return f"{host} (down {self.host_down:.0f}s)"

    # -- one trial -----------------------------------------------------------------

    def _first_run(self, sim: str, from_step: str, deadline: float) -> None:
        """Run the auto-pilot undisturbed up to where a restart at `from_step` begins."""
        self._shim("start", {"simulation_id": sim}, deadline)
        while time.monotonic() < deadline:
            status = self._shim("status", {"simulation_id": sim}, deadline).get("data") or {}
            self._confirm_if_waiting(sim, status, deadline)
            if status.get("status") == "completed" or (
                from_step == "monitoring" and status.get("current_step") == "monitoring"
            ):
                return
            if status.get("status") == "failed":
                raise RuntimeError(f"the first run of {sim} failed undisturbed: {status}")
            self._sleep(0.25)
        raise TimeoutError(f"the first run of {sim} did not get to {from_step}")

    def _confirm_if_waiting(self, sim: str, status: dict[str, Any], deadline: float) -> None:
        """A manual-mode run waiting between two steps: confirm the next one."""
        if status.get("status") == "paused" and status.get("awaiting_confirmation"):
            self._shim("resume", {"simulation_id": sim}, deadline)

    def _trial(
        self,
        number: int,
        target: str,
        kill_at: float | None,
        worker_alone: bool = False,
        from_step: str | None = None,
        manual: bool = False,
    ) -> Trial:
        from autopilot.run import crashpoints

        trial = Trial(number=number, target=target, from_step=from_step, manual=manual)
        # A restart at monitoring must find the first run monitoring: its rounds are slower,
        # so that status (a poll and the cache's lag away) is not overtaken by its end.
        slower = MONITORED_ROUND_SECONDS if from_step == "monitoring" else None
        sim = trial.simulation_id = self._create_simulation(number, slower)
        deadline = time.monotonic() + self.timeout * (2 if from_step else 1)
        mode = "manual" if manual else "auto"
        self._shim("config", {"simulation_id": sim, "mode": mode}, deadline)
        request: dict[str, Any] = {"simulation_id": sim}
        reports_before = 0
        if from_step is not None:
            self._first_run(sim, from_step, deadline)
            request.update(force=True, from_step=from_step)
            reports_before = int((self._ledger(sim).get("counts") or {}).get("report", 0))
        # The kill falls in the run being tested: a restart's, not its first run's.
        if target in ("flow@start-accepted", "flow@report-done"):
            for data_dir, _ in self._data_dirs():
                crashpoints.arm(data_dir, sim, target.split("@")[1])
            trial.killed = "crash point"
        else:
            trial.kill_at = kill_at
        started = time.monotonic()
        start = self._shim("start", request, deadline)
        if not start.get("success"):
            raise RuntimeError(f"start of {sim} refused: {start}")
        flow_run_id = (start.get("data") or {}).get("flow_run_id")
        rounds: list[tuple[str | None, int]] = []
        marker_at_kill: tuple[Any, ...] | None = None
        killed_at: float | None = None
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            run = self._backend_get(f"/api/simulation/{sim}/run-status")
            if run is not None:
                rounds.append((run.get("started_at"), int(run.get("current_round") or 0)))
            status = self._shim("status", {"simulation_id": sim}, deadline).get("data") or {}
            # Progress as the auto-pilot itself records it (not the simulation's own rounds).
            marker = (
                status.get("last_completed_step"),
                status.get("step_progress"),
                (status.get("progress_detail") or {}).get("current_round"),
                status.get("status") in FINAL,
            )
            now = time.monotonic()
            due = trial.kill_at is not None and now - started >= trial.kill_at
            if target == "flow@pause-window":
                # Only a running step can be paused: the moment is drawn within monitoring.
                due = due and status.get("current_step") == "monitoring"
            if due and killed_at is None:
                if target == "flow@pause-window":
                    trial.killed = self._pause_then_kill(sim, flow_run_id, deadline)
                else:
                    trial.killed = self._kill(target, flow_run_id, worker_alone)
                killed_at, marker_at_kill = time.monotonic(), marker
            elif killed_at is not None and trial.recovery is None and marker != marker_at_kill:
                trial.recovery = now - killed_at
            if status.get("status") == "paused" and target == "flow@pause-window":
                self._shim("resume", {"simulation_id": sim}, deadline)
            else:
                self._confirm_if_waiting(sim, status, deadline)
            if status.get("status") in FINAL:
                break
            self._sleep(0.25)
        trial.duration = time.monotonic() - started
        trial.final_status = str(status.get("status") or "")
        ledger = self._ledger(sim)
        trial.violations = check_invariants(
            ledger.get("counts") or {}, trial.final_status, rounds, from_step, reports_before
        )
        return trial

    def _report(self, trial: Trial) -> None:
        mark = "[red]VIOLATION[/red]" if trial.violations else "ok"
        recovery = "-" if trial.recovery is None else f"{trial.recovery:.1f}s"
        self.console.print(
            f"trial {trial.number:>3} {trial.target:<20} "
            f"{'manual' if trial.manual else 'auto':<6} "
            f"{'from ' + trial.from_step if trial.from_step else '':<22} "
            f"kill@{trial.kill_at or 0:5.1f}s "
            f"{trial.killed:<30} recovery {recovery:>6} {trial.duration:5.1f}s "
            f"{mark} {' '.join(trial.violations)}",
            highlight=False,
        )

    def _pause_then_kill(self, sim: str, flow_run_id: str | None, deadline: float) -> str:
        """Pause, and kill the flow process before it has yielded to the suspension."""
        answer = self._shim("pause", {"simulation_id": sim}, deadline)
        what = self._kill("flow", flow_run_id)
        return f"paused ({answer.get('error_code') or 'ok'}), then {what}"

    # -- the run -------------------------------------------------------------------

    def run(self) -> list[Trial]:
        """Start the stack, calibrate one undisturbed run, then run the trials."""
        os.environ["PREFECT_API_URL"] = self.supervisor.prefect_api_url
        self.console.print(f"chaos: stack in {self.workdir}")
        postgres = None
        if self.db == "postgres":
            from autopilot.devstack.postgres import start_postgres

            postgres = start_postgres(free_port())
            self.supervisor.env["PREFECT_API_DATABASE_CONNECTION_URL"] = postgres.url
            self.console.print(f"  postgres ready (port {postgres.port})")
        results: list[Trial] = []
        try:
            self.supervisor.start(on_ready=lambda name: self.console.print(f"  {name} ready"))
            watcher = threading.Thread(target=self.supervisor.supervise, args=(0.2,), daemon=True)
            watcher.start()
            calibration = self._trial(0, "none", kill_at=None)
            window = max(1.0, calibration.duration)
            self.console.print(
                f"calibration run: {calibration.duration:.1f}s, "
                f"violations {calibration.violations or 'none'}"
            )
            # Drawn up front so a seed gives the same plan whatever the threads do.
            plan = [
                (n, self.rng.choice(self.targets), self.rng.uniform(0, window), self.rng.random())
                for n in range(1, self.trials + 1)
            ]
            # Drawn after the kills, and only when asked, so earlier seeds keep their plans.
            restart_at = draw_restarts(self.rng, len(plan), self.restarts)
            manual = draw_manual(self.rng, len(plan), self.manual)
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(max_workers=self.parallel)
            futures = [
                pool.submit(self._trial, n, target, at, alone < 0.5, from_step, by_hand)
                for (n, target, at, alone), from_step, by_hand in zip(
                    plan, restart_at, manual, strict=True
                )
            ]
            try:
                for future in futures:
                    trial = future.result()
                    results.append(trial)
                    self._report(trial)
            except KeyboardInterrupt:
                # Trials not begun are dropped; those under way end at their next look.
                self.interrupted = True
                self._aborted.set()
                self.console.print(
                    f"interrupted: {len(results)} of {self.trials} trials done; stopping the stack"
                )
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        finally:
            self.supervisor.stop()
            if postgres is not None:
                postgres.stop()
            self.shim.close()
            self.backend.close()
        if any(trial.violations for trial in results):
            self.console.print(f"logs and data kept for inspection in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return results

    def summary(self, trials: list[Trial]) -> Table:
        """The per-target table: trials, recovery p50/p99, violations."""
        table = Table(title="chaos summary")
        for column in ("target", "trials", "recovery p50 s", "recovery p99 s", "violations"):
            table.add_column(column, justify="right" if column != "target" else "left")
        groups: dict[str, list[Trial]] = {}
        for trial in trials:
            groups.setdefault(trial.target, []).append(trial)
        for target, group in sorted(groups.items()) + [("all", trials)]:
            recoveries = [t.recovery for t in group if t.recovery is not None]
            table.add_row(
                target,
                str(len(group)),
                f"{statistics.median(recoveries):.2f}" if recoveries else "-",
                f"{percentile(recoveries, 0.99):.2f}" if recoveries else "-",
                str(sum(len(t.violations) for t in group)),
            )
        return table
