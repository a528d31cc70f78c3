"""Training runs the dashboard starts: `python -m tuneforge train RECIPE KEY=VALUE...` subprocesses.

A subprocess, not a thread: the dashboard stays responsive while torch uses every core, a crash (or an
out-of-memory kill) of the run cannot take the dashboard down, and the run is exactly what the CLI does.
Each is started in its own session, so stopping the dashboard (Ctrl-C) leaves running trainings alone;
a dashboard started later still shows them (their run folders say `running` while the process lives).
Output goes to `<runs_dir>/.ui/logs/<job>.log`; a job record (`.ui/jobs/<job>.json`) ties it to the run
folder, found by the pid the trainer writes into it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.train.runfolder import read_owner, request_stop

_JOB_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$")
_LOG_TAIL_BYTES = 64_000


class JobNotFound(LookupError):
    pass


@dataclass
class Job:
    id: str
    pid: int
    argv: list[str]
    log: str
    started: float
    recipe: str
    overrides: list[str] = field(default_factory=list)
    run_dir: str | None = None  # known once the trainer has created (or reopened) its run folder
    returncode: int | None = None
    ended: float | None = None


class JobManager:
    def __init__(self, roots: list[Path], state_dir: Path, cwd: Path):
        self.roots, self.cwd = [Path(r) for r in roots], Path(cwd)
        self.jobs_dir, self.logs_dir = Path(state_dir) / "jobs", Path(state_dir) / "logs"
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        for path in sorted(self.jobs_dir.glob("*.json")) if self.jobs_dir.is_dir() else []:
            try:
                job = Job(**json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError):
                continue  # a record from another version or a half-written one: not worth failing over
            self._jobs[job.id] = job

    def launch(self, recipe: Path, overrides: list[str]) -> Job:
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        log = self.logs_dir / f"{job_id}.log"
        argv = [sys.executable, "-m", "tuneforge", "train", str(recipe), *overrides]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": os.environ.get("COLUMNS", "120")}
        with open(log, "ab") as out:
            out.write(("$ tuneforge " + " ".join(argv[3:]) + "\n").encode("utf-8"))
            out.flush()
            proc = subprocess.Popen(argv, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        job = Job(id=job_id, pid=proc.pid, argv=argv, log=str(log), started=time.time(), recipe=str(recipe),
                  overrides=list(overrides))
        with self._lock:
            self._procs[job_id], self._jobs[job_id] = proc, job
            self._save(job)
        return job

    def refresh(self) -> None:
        """Reap finished processes and find the run folder of jobs that do not know theirs yet."""
        with self._lock:
            for job_id, proc in list(self._procs.items()):
                job = self._jobs[job_id]
                if job.run_dir is None:
                    job.run_dir = self._find_run_dir(job)
                    if job.run_dir is not None:
                        self._save(job)
                code = proc.poll()
                if code is not None:
                    job.returncode, job.ended = code, time.time()
                    job.run_dir = job.run_dir or self._find_run_dir(job)
                    del self._procs[job_id]
                    self._save(job)

    def jobs(self) -> list[dict[str, Any]]:
        self.refresh()
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: j.started, reverse=True)
            return [self.describe(j) for j in jobs]

    def get(self, job_id: str) -> Job:
        if not _JOB_ID.match(job_id or "") or job_id not in self._jobs:
            raise JobNotFound(f"job not found: {job_id}")
        return self._jobs[job_id]

    def for_run(self, run_dir: Path) -> Job | None:
        self.refresh()
        target = str(Path(run_dir).resolve())
        found = [j for j in self._jobs.values() if j.run_dir and str(Path(j.run_dir).resolve()) == target]
        return max(found, key=lambda j: j.started) if found else None

    def stop(self, job_id: str) -> str:
        """A clean stop once the trainer has its run folder (stop-request file: checkpoint, `stopped`);
        before that (reading data, loading the model) nothing is lost, so the process gets Ctrl-C."""
        self.refresh()
        job = self.get(job_id)
        proc = self._procs.get(job_id)
        if job.run_dir is not None and request_stop(job.run_dir) is None:
            return "stop requested"
        if proc is None or proc.poll() is not None:
            return "already ended"
        proc.send_signal(signal.SIGINT)  # our own child, by its Popen handle: never a pid read from a file
        return "interrupted"

    def log_tail(self, job_id: str) -> str:
        path = Path(self.get(job_id).log)
        try:
            with open(path, "rb") as fh:
                fh.seek(max(0, path.stat().st_size - _LOG_TAIL_BYTES))
                return fh.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def kill_all(self) -> None:
        """End the processes this manager started, by their handles (tests; runs otherwise outlive the UI)."""
        for proc in list(self._procs.values()):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        self.refresh()

    def describe(self, job: Job) -> dict[str, Any]:
        alive = job.id in self._procs
        if alive:
            state = "running" if job.run_dir else "starting"
        elif job.returncode is None:
            state = "detached"  # started by an earlier dashboard; its run folder has the status
        else:
            state = "exited" if job.returncode == 0 else "failed"
        return {**asdict(job), "state": state, "run": Path(job.run_dir).name if job.run_dir else None}

    def _find_run_dir(self, job: Job) -> str | None:
        """The run folder whose `pid` file the job's process wrote (after the job started: pids recur)."""
        mine = (job.pid, platform.node())
        for root in self.roots:
            for folder in root.iterdir() if root.is_dir() else []:
                try:
                    fresh = (folder / "pid").stat().st_mtime >= job.started - 1
                except OSError:
                    continue
                if fresh and read_owner(folder) == mine:
                    return str(folder)
        return None

    def _save(self, job: Job) -> None:
        tmp = self.jobs_dir / f".{job.id}.tmp"
        tmp.write_text(json.dumps(asdict(job), indent=2), encoding="utf-8")
        os.replace(tmp, self.jobs_dir / f"{job.id}.json")
