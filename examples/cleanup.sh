#!/bin/sh
# A shell cleanup job whose writes to etcd are fenced by its run's leadership.
#
#   leaderjob run --election cleanup --schedule '*/5 * * * *' -- sh examples/cleanup.sh
#
# leaderjob hands the job LEADERJOB_FENCING_TOKEN, LEADERJOB_LEADER_KEY and LEADERJOB_ENDPOINTS;
# `leaderjob fenced put/delete` write only while the leader's key still stands (one etcd Txn), and
# exit 3 once this run is deposed — then stop at once: a successor owns the work now. Exit 5 means
# no answer came (the write may have landed); `set -e` stops here too and the next run redoes
# the idempotent work (docs/fencing.md). With TLS or
# authentication on etcd, give the connection options as usual (LEADERJOB_CACERT, --user with
# LEADERJOB_PASSWORD_FILE, ...): the daemon never hands its credentials down.
set -eu
prefix=${CLEANUP_PREFIX:-/app/cleanup}
leaderjob=${LEADERJOB:-leaderjob}

"$leaderjob" fenced put "$prefix/in-progress" "$LEADERJOB_SLOT"
# ... the work: delete old files, expire sessions, ... (idempotent, keyed by slot) ...
"$leaderjob" fenced put "$prefix/last-done" "slot=$LEADERJOB_SLOT token=$LEADERJOB_FENCING_TOKEN"
"$leaderjob" fenced delete "$prefix/in-progress"
echo "cleanup done for slot $LEADERJOB_SLOT"
