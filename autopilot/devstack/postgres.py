"""A throwaway PostgreSQL 15 cluster for a Prefect server: `initdb` and `pg_ctl` in a
temporary directory, trust auth, loopback only, run as the `postgres` user when we are root
(both refuse to run as root). For the benchmarks and the many-hosts tests."""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster in a temporary directory, run as the `postgres` user."""

    bin_dir: Path
    data_dir: Path
    port: int
    user: str

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/prefect"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)

    def query(self, sql: str) -> str:
        """One SQL statement through `psql` on the `prefect` database; its unaligned output."""
        return self._run(
            str(self.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "-d", "prefect", "-Atc", sql,
        ).stdout.strip()  # fmt: skip

    def stop(self) -> None:
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "stop", "-m", "fast")
        except (subprocess.SubprocessError, OSError) as exc:
            logger.warning("pg_ctl stop failed: %s", exc)
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def find_pg_bin() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        return Path(candidate).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def start_postgres(port: int) -> Postgres:
    """initdb + pg_ctl start on 127.0.0.1:`port` (trust auth, loopback only) + createdb."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise RuntimeError("no initdb found (looked in /usr/lib/postgresql/*/bin and PATH)")
    user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    # Not under a 0700 root-owned mkdtemp: the postgres user must reach it.
    root = Path(f"/tmp/autopilot-pg-{os.getpid()}-{port}")
    root.mkdir(mode=0o755)
    data_dir, socket_dir = root / "data", root / "socket"
    socket_dir.mkdir()
    if os.geteuid() == 0:
        info = pwd.getpwnam(user)
        for path in (root, socket_dir):
            os.chown(path, info.pw_uid, info.pw_gid)
    pg = Postgres(bin_dir, data_dir, port, user)
    try:
        pg._run(str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres",
                "--auth=trust", "-E", "UTF8", "--no-instructions")  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={socket_dir}"
            " -c max_connections=200 -c shared_buffers=256MB -c fsync=on"
        )
        pg._run(str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-o", options,
                "-l", str(root / "postgres.log"), "-w", "-t", "60", "start")  # fmt: skip
        pg._run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                "prefect")  # fmt: skip
    except BaseException:
        pg.stop()
        raise
    return pg
