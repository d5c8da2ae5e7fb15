"""Real servers for the cluster tests and the load benchmark, started in a temporary folder.

``start_slurm(base)``: a one-node SLURM cluster on loopback (munged, slurmctld, slurmd) from the
distribution's packages, two partitions, every state file under ``base``.
``start_postgres(base)``: a PostgreSQL server as in tests/engine/test_postgres.py.

Each returns a handle whose ``stop()`` ends every process it started; a server that cannot be
started raises :class:`Unavailable` with the reason (the tests skip with it). Every wait is
bounded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

SLURM_START_S = 60  # slurmctld + slurmd to an idle node: ~3 s here, far more on a busy CI box
MAX_ARRAY_SIZE = 5  # small, so a test suite of a dozen runs needs several arrays
NODE_CPUS = 4  # job slots on the one node (overrides detection: 2 cores fit 4 sleeping jobs)
PG_BIN = Path("/usr/lib/postgresql/15/bin")


class Unavailable(Exception):
    """A server cannot be started here; the message says why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], timeout_s: float = 30, env: dict | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    if proc.returncode != 0:
        raise Unavailable(f"{' '.join(cmd[:2])} failed: {(proc.stderr or proc.stdout)[-400:]}")
    return proc.stdout


# --------------------------------------------------------------------------- SLURM


@dataclasses.dataclass
class Slurm:
    base: Path
    conf: Path
    node: str
    procs: list[subprocess.Popen]
    log: Any = None  # the daemons' stdout/stderr file, closed by stop()

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def stop(self) -> None:
        subprocess.run(
            ["scancel", "--full", "--user", "root"], env=self.env, capture_output=True, timeout=20
        )
        deadline = time.time() + 10  # let the cancelled jobs' step daemons end
        while time.time() < deadline:
            out = subprocess.run(
                ["squeue", "-h", "-t", "R,CG"],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=20,
            )
            if not out.stdout.strip():
                break
            time.sleep(0.3)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=2)
        for pid in self._step_daemons():  # slurmstepd outlives slurmd: end ours by pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.log is not None:
            self.log.close()
        munge_pid = self.base / "munged.pid"
        if munge_pid.exists():
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(munge_pid.read_text().strip()), signal.SIGTERM)

    def _step_daemons(self) -> list[int]:
        """The slurmstepd processes of this cluster: those writing into its folder."""
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if (proc / "comm").read_text().strip() != "slurmstepd":
                    continue
                targets = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
            except OSError:
                continue
            if any(str(self.base) in target for target in targets):
                pids.append(int(proc.name))
        return pids


SLURM_CONF = """\
ClusterName=assaytest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={base}/munge.socket
CredType=cred/munge
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool
SlurmctldPidFile={base}/slurmctld.pid
SlurmdPidFile={base}/slurmd.pid
SlurmctldLogFile={base}/slurmctld.log
SlurmdLogFile={base}/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
SchedulerType=sched/builtin
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MaxArraySize={max_array}
# a cancelled or requeued job gets SIGTERM, then SIGKILL this many seconds later
KillWait=2
MinJobAge=3600
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
PartitionName=long Nodes={node} MaxTime=INFINITE State=UP
"""


def start_slurm(base: Path) -> Slurm:
    """A one-node SLURM cluster on 127.0.0.1 with partitions ``debug`` (default) and ``long``."""
    if os.geteuid() != 0:
        raise Unavailable("the test SLURM cluster runs slurmd as root; not root here")
    missing = [
        c
        for c in ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "sinfo")
        if shutil.which(c) is None
    ]
    if missing:
        raise Unavailable(
            f"SLURM/munge not installed (missing {', '.join(missing)}); run .ci/install-cluster.sh"
        )
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o700)  # munged refuses a key in a folder others can write
    for sub in ("state", "spool"):
        (base / sub).mkdir(exist_ok=True)
    node = socket.gethostname().split(".")[0]
    key = base / "munge.key"
    _run(["mungekey", "--create", f"--keyfile={key}", "--force"])
    key.chmod(0o600)
    _run(
        [
            "munged",
            "--force",
            f"--socket={base}/munge.socket",
            f"--key-file={key}",
            f"--pid-file={base}/munged.pid",
            f"--log-file={base}/munged.log",
            f"--seed-file={base}/munged.seed",
        ]
    )
    conf = base / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(
            node=node,
            ctld_port=free_port(),
            d_port=free_port(),
            base=base,
            max_array=MAX_ARRAY_SIZE,
            cpus=NODE_CPUS,
        )
    )
    slurm = Slurm(base, conf, node, [])
    env = slurm.env
    log = slurm.log = open(base / "daemons.out", "ab")  # noqa: SIM115 - closed by stop()
    try:
        for cmd in (
            ["slurmctld", "-D", "-i", "-f", str(conf)],
            ["slurmd", "-D", "-f", str(conf), "-N", node],
        ):
            slurm.procs.append(
                subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
            )
            time.sleep(0.5)
        deadline = time.time() + SLURM_START_S
        state = ""
        while time.time() < deadline:
            dead = [p.args[0] for p in slurm.procs if p.poll() is not None]
            if dead:
                raise Unavailable(f"{dead[0]} exited at start: {_tail(base, dead[0])}")
            out = subprocess.run(
                ["sinfo", "-h", "-N", "-o", "%T"],
                env=env,
                text=True,
                capture_output=True,
                timeout=10,
            )
            state = out.stdout.strip()
            if state.startswith("idle"):
                return slurm
            time.sleep(0.5)
        raise Unavailable(
            f"the SLURM node never became idle (state {state!r}) within "
            f"{SLURM_START_S} s: {_tail(base, 'slurmd')}"
        )
    except BaseException:
        slurm.stop()
        raise


def _tail(base: Path, daemon: str) -> str:
    path = base / f"{Path(daemon).name}.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    text += (base / "daemons.out").read_text(errors="replace")
    return text.strip()[-500:] or "(no log)"


# --------------------------------------------------------------------------- PostgreSQL


@dataclasses.dataclass
class Postgres:
    base: Path
    url: str
    pg_ctl: Path

    def stop(self) -> None:
        data = self.base / "data"
        subprocess.run(
            _as_postgres([str(self.pg_ctl), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.base, ignore_errors=True)


def _as_postgres(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; run the server as the `postgres` user when we are root.
    if os.geteuid() == 0 and shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def start_postgres(base: Path, max_connections: int = 100) -> Postgres:
    """A PostgreSQL server in ``base`` (world-readable: the server user must reach it)."""
    initdb = shutil.which("initdb") or (
        str(PG_BIN / "initdb") if (PG_BIN / "initdb").exists() else None
    )
    if initdb is None:
        raise Unavailable("PostgreSQL server binaries (initdb) are not installed")
    bindir = Path(os.path.realpath(initdb)).parent
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o777)
    data, port = base / "data", free_port()
    steps = [
        [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "assay", "--no-sync"],
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(base / "pg.log"),
            "-w",
            "-o",
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1 "
            f"-c max_connections={max_connections}",
            "start",
        ],
    ]
    for cmd in steps:
        proc = subprocess.run(_as_postgres(cmd), capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            shutil.rmtree(base, ignore_errors=True)
            raise Unavailable(f"cannot start a PostgreSQL server: {proc.stderr.strip()[-300:]}")
    return Postgres(
        base, f"postgresql+psycopg://assay@127.0.0.1:{port}/postgres", bindir / "pg_ctl"
    )
