#!/usr/bin/env bash
# Directory integration test: starts a throwaway etcd (tests/lib/etcd.sh), runs the C
# driver dir_it against it, and always stops etcd by PID on exit. Logs are kept in the
# work dir on failure.
#   run.sh <path to dir_it>
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
etcd_sh="$here/../../lib/etcd.sh"
driver=$1
work=$(mktemp -d /tmp/parley-dir-it.XXXXXX)
state="$work/etcd"
ok=0
cleanup() {
  bash "$etcd_sh" stop "$state" || true
  if [ "$ok" = 1 ]; then rm -rf "$work"; else echo "run.sh: logs kept in $work" >&2; fi
}
trap cleanup EXIT
url=$(bash "$etcd_sh" start "$state")
ETCD_ENDPOINT=$url ETCD_SH=$etcd_sh ETCD_STATE=$state WORK_DIR=$work "$driver"
ok=1
