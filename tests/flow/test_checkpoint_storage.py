"""Checkpoints that cannot be written must not pass silently: with the result storage full or
read-only, the run fails at the step whose checkpoint was lost, naming the storage path.

The storage is a 1 MB tmpfs this module mounts (root with CAP_SYS_ADMIN, as on these
machines); without the right to mount, the module is skipped and says why.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SESSION_DIR
from tests.prefect_stack import launch, wait_for_state
from tests.stack_fixtures import Stack, named_stack

DEPLOYMENT = "auto-pilot/fragile-storage"


def mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def results_mount() -> Iterator[Path]:
    path = SESSION_DIR / "fragile-results"
    path.mkdir(parents=True, exist_ok=True)
    mounted = mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def fragile(
    results_mount: Path, prefect_server: None, simulator: tuple[str, Path]
) -> Iterator[Stack]:
    with named_stack(
        "fragile-storage", *simulator, PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(results_mount)
    ) as stack:
        yield stack


def fill(path: Path) -> Path:
    """Fill the file system at `path` to the last byte (unbuffered, so no write is pending)."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (65536, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


def assert_failed_at_preparing_naming(run, path: Path) -> None:
    assert str(path) in run.state.message, run.state.message
    assert "checkpoint of step preparing" in run.state.message


def test_a_full_result_storage_fails_the_run_naming_the_path(fragile: Stack, results_mount: Path):
    sim = fragile.create_simulation(rounds=3)
    filler = results_mount / "filler"
    try:
        fill(results_mount)
        run = wait_for_state(launch(sim, deployment=DEPLOYMENT), {"FAILED"}, timeout=90)
    finally:
        filler.unlink(missing_ok=True)
    assert_failed_at_preparing_naming(run, results_mount)
    assert fragile.ledger(sim)["start"] == 0


def test_a_read_only_result_storage_fails_the_run_naming_the_path(
    fragile: Stack, results_mount: Path
):
    sim = fragile.create_simulation(rounds=3)
    assert mount("-o", "remount,ro", str(results_mount)).returncode == 0
    try:
        run = wait_for_state(launch(sim, deployment=DEPLOYMENT), {"FAILED"}, timeout=90)
    finally:
        mount("-o", "remount,rw", str(results_mount))
    assert_failed_at_preparing_naming(run, results_mount)
    assert fragile.ledger(sim)["start"] == 0
    # Once the storage is writable again, a retry goes through.
    wait_for_state(launch(sim, deployment=DEPLOYMENT), {"COMPLETED"}, timeout=90)
    assert fragile.ledger(sim) == {"prepare": 1, "start": 1, "stop": 0, "report": 1}
