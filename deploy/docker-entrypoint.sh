#!/bin/sh
# With SHARE_SCHEDULER_MIGRATE=1 the ledger schema is upgraded before the command runs.
set -eu
if [ "${SHARE_SCHEDULER_MIGRATE:-0}" = "1" ]; then
  share-scheduler db upgrade
fi
exec share-scheduler "$@"
