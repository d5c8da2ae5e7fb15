"""Four shards over a 20,000-run suite: every run once, and `assay status` stays fast."""

import resource
import subprocess
import sys
import time

import pytest

N_RUNS = 20_000
STATUS_CPU_S = 1.5  # CPU seconds, not wall: the test must not depend on the machine's load


def assay(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "assay", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


@pytest.mark.slow
def test_four_shards_over_twenty_thousand_runs(tmp_path):
    suite = tmp_path / "big.yaml"
    suite.write_text(f"stage: t.count\nsweep: {{grid: {{x: {list(range(N_RUNS))}}}}}\n")
    root = tmp_path / "runs"
    shards = [
        assay(
            "run", suite, "--root", root, "--shard", f"{i}/4", "--quiet", "--import", "teststages"
        )
        for i in range(4)
    ]
    time.sleep(5)  # status while the shards run
    probe = assay("status", suite, "--root", root, "--import", "teststages")
    out, err = probe.communicate(timeout=120)
    assert probe.returncode == 0, err
    outs = [p.communicate(timeout=1800) for p in shards]
    assert all(p.returncode == 0 for p in shards), [e for _, e in outs]
    assert f"/{N_RUNS} done" in out
    # CPU time of one status call alone, once the shards are done
    t0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    final = assay("status", suite, "--root", root, "--import", "teststages")
    final_out, _ = final.communicate(timeout=120)
    t1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (t1.ru_utime - t0.ru_utime) + (t1.ru_stime - t0.ru_stime)
    assert f"{N_RUNS}/{N_RUNS} done" in final_out
    assert cpu < STATUS_CPU_S, f"assay status took {cpu:.2f} CPU s for {N_RUNS} runs"
    executed = sum(int(o.strip().splitlines()[-1].split(": ", 1)[1].split()[0]) for o, _ in outs)
    assert executed == N_RUNS  # each shard ran its quarter, nothing twice
