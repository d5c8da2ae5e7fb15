#!/usr/bin/env bash
# Install what the cluster tests (tests/executors/) need and the machine lacks:
#   - a single-node SLURM (slurmctld, slurmd, the client commands) and munge, from Debian;
#   - Ray into the project's venv (pinned by constraints.txt, so torch is untouched).
# Idempotent and quiet when everything is present. Called by .ci/run before `make test`.
# Where an install fails the script goes on: the tests then skip and say why.
set -uo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for cmd in slurmctld slurmd sbatch munged; do
    command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$cmd")
done
if ((${#need_apt[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "install-cluster: installing SLURM and munge (missing: ${need_apt[*]})"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq || echo "install-cluster: apt-get update failed"
        # slurm-wlm-basic-plugins carries the auth, select and proctrack plugins slurm.conf names
        apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client \
            slurm-wlm-basic-plugins munge >/dev/null \
            || echo "install-cluster: apt-get install failed; the SLURM tests will skip"
    else
        echo "install-cluster: not root or no apt-get; the SLURM tests will skip"
    fi
fi

if [ -x .venv/bin/python ] && ! .venv/bin/python -c "import ray" >/dev/null 2>&1; then
    echo "install-cluster: installing ray into .venv"
    .venv/bin/pip install -q -c constraints.txt 'ray[default]' \
        || echo "install-cluster: pip install ray failed; the Ray cluster tests will skip"
fi
exit 0
