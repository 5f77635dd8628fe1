#!/bin/bash
# Copied from the project's shared notes (shared/slurm/stop_slurm.sh, the verified bring-up described in
# docs/design.md §6) so that the tests do not need ../shared.
# Used by tests/slurm/conftest.py, only for a cluster that the test run started itself.
# Stop the daemons started by start_slurm.sh, by PID from their pid files (no pkill/killall).
# Cancels remaining jobs first so no slurmstepd/job processes are orphaned.
# Usage: stop_slurm.sh [--keep-munge]
BASE=${SLURM_TEST_BASE:-${TMPDIR:-/tmp}/kmlm-slurm}
pid_live() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null \
             && { [ -z "${2:-}" ] || [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]; }; }
stop_pid() {  # comm pidfile
  local name=$1 pf=$2 pid
  [ -s "$pf" ] || { echo "$name: no pid file"; return 0; }
  pid=$(cat "$pf")
  if ! pid_live "$pid" "$name"; then echo "$name: pid $pid not running"; rm -f "$pf"; return 0; fi
  kill -TERM "$pid"
  for _ in $(seq 1 60); do pid_live "$pid" || { echo "$name: pid $pid stopped"; rm -f "$pf"; return 0; }; sleep 0.25; done
  echo "$name: pid $pid did not exit after 15s, sending KILL"; kill -KILL "$pid" 2>/dev/null; rm -f "$pf"; return 1
}
rc=0
if [ -s "$BASE/run/slurmctld.pid" ] && pid_live "$(cat "$BASE/run/slurmctld.pid")" slurmctld; then
  jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    echo "cancelling jobs: $jobs"; scancel $jobs 2>/dev/null || true
    for _ in $(seq 1 60); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.5; done
  fi
fi
stop_pid slurmd    "$BASE/run/slurmd.pid"    || rc=1
stop_pid slurmctld "$BASE/run/slurmctld.pid" || rc=1
if [ "${1:-}" != "--keep-munge" ]; then stop_pid munged /run/munge/munged.pid || rc=1; fi
exit $rc
