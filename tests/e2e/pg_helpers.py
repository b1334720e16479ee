"""A real PostgreSQL server for the e2e tests of the shared store, started with
scripts/pg-test-server (initdb + pg_ctl as a non-root user, unix socket in its own folder)."""
from __future__ import annotations

import itertools
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "pg-test-server"


class Postgres:
    def __init__(self) -> None:
        # Not pytest's tmp_path: its parents are private to root, and the server runs as `postgres`.
        self.dir = Path(tempfile.mkdtemp(prefix="statim-pg."))
        self.dir.chmod(0o755)
        self.url = self._script("start", str(self.dir)).strip()
        self._names = itertools.count(1)

    def _script(self, *args: str) -> str:
        r = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"pg-test-server {' '.join(args)} failed:\n{r.stderr}"
        return r.stdout

    def url_for(self, db: str) -> str:
        return self.url.replace("postgresql:///statim?", f"postgresql:///{db}?")

    def new_database(self) -> str:
        """An empty database; returns its URL."""
        name = f"e2e_{next(self._names)}"
        self.sql(f"CREATE DATABASE {name}")
        return self.url_for(name)

    def sql(self, statement: str, url: str | None = None) -> list[list[str]]:
        r = subprocess.run(["psql", url or self.url, "-XAtq", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", statement],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"psql {statement!r}: {r.stderr}"
        return [line.split("\t") for line in r.stdout.splitlines() if line]

    def restart(self, mode: str = "fast") -> None:
        self._script("restart", str(self.dir), mode)

    def stop(self) -> None:
        self._script("stop", str(self.dir))
        shutil.rmtree(self.dir, ignore_errors=True)
