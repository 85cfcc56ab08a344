#!/usr/bin/env bash
# Progress lines with timings, one pair per step, the same for .ci/run, the Makefile
# and scripts/setup.sh:
#
#   ==> [14:05:30] apt packages
#   <== apt packages: 12s
#
# Sourced: defines `step NAME` (ends the previous step, starts NAME), `step_end`, and
#          `step_failed RC` for an EXIT trap.
# Run:     scripts/steps.sh NAME COMMAND [ARGS...] times COMMAND as one step and
#          exits with its status ("<== NAME: failed after 3s (exit 2)").

step_name=""
step_start=$SECONDS

step_end() {
    if [[ -n "$step_name" ]]; then
        printf '<== %s: %ss\n' "$step_name" "$((SECONDS - step_start))"
    fi
    step_name=""
}

step_failed() {
    if [[ -n "$step_name" ]]; then
        printf '<== %s: failed after %ss (exit %s)\n' "$step_name" "$((SECONDS - step_start))" "$1"
    fi
    step_name=""
}

step() {
    step_end
    step_name="$1"
    step_start=$SECONDS
    printf '==> [%s] %s\n' "$(date -u +%H:%M:%S)" "$step_name"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -uo pipefail
    if (($# < 2)); then
        echo "usage: $0 NAME COMMAND [ARGS...]" >&2
        exit 2
    fi
    name="$1"
    shift
    step "$name"
    "$@"
    rc=$?
    if ((rc == 0)); then
        step_end
    else
        step_failed "$rc"
    fi
    exit "$rc"
fi
