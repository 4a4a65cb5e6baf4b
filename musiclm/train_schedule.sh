#!/bin/sh
# The background training of this session, one process, one thread, lowest priority:
# JSB relative, JSB absolute (the paper's experiment), then MAESTRO relative (the live model)
# until STOP_AT (UTC, HH:MM). Every run is resumable: running this again continues each one.
# The code runs from a frozen copy (runs/musiclm/code), so edits to the tree cannot break a
# later run of the schedule.
set -u
cd "$(dirname "$0")/.."
REPO=$(pwd)
STOP_AT=${STOP_AT:-08:02}
CODE=$REPO/runs/musiclm/code
rm -rf "$CODE" && mkdir -p "$CODE" && cp -r musiclm modelkit pianogenie daemon "$CODE"/
export GENIE_DATASETS=${GENIE_DATASETS:-$(cd "$REPO/../shared/datasets" && pwd)}
run() { (cd "$CODE" && nice -n 19 python -m musiclm.cli train --threads 1 "$@"); }
R=$REPO/runs/musiclm
run --dataset jsb --position relative --out "$R/jsb-relative" --steps 2500 --max-minutes 28
run --dataset jsb --position absolute --out "$R/jsb-absolute" --steps 2500 --max-minutes 28
left=$(( ($(date -u -d "$STOP_AT" +%s) - $(date -u +%s)) / 60 ))
[ "$left" -gt 2 ] && run --dataset maestro --position relative --out "$R/maestro-relative" --steps 4500 --max-minutes "$left"
echo "schedule done $(date -u)"
