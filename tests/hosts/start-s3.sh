#!/usr/bin/env bash
# A real S3 gateway for the tests, on this machine only: a one-node Ceph (Debian's ceph-mon, ceph-mgr, one bluestore
# ceph-osd on a sparse file) and Ceph's S3 gateway radosgw on 127.0.0.1, all started by hand (no systemd, no cephadm),
# with their configuration, data, sockets and logs under one folder, and one S3 user whose keys are printed.
#   start-s3.sh [ROOT]          installs the Debian packages if missing, creates the cluster on first use, starts what
#                               is not running, and prints the lines to use:
#                                 export AWS_ENDPOINT_URL=http://127.0.0.1:7480
#                                 export AWS_ACCESS_KEY_ID=...  AWS_SECRET_ACCESS_KEY=...  AWS_REGION=us-east-1
#                               and ROOT/s3cfg, a configuration for s3cmd (s3cmd -c ROOT/s3cfg ls)
#   start-s3.sh stop [ROOT]     stops radosgw, the OSD, the manager and the monitor (the data stays)
#   start-s3.sh stop-rgw [ROOT] stops radosgw only: the cluster stays, the endpoint refuses connections (an unreachable gateway)
#   start-s3.sh purge [ROOT]    stops everything and deletes ROOT
# ROOT defaults to /var/tmp/vmckpt-s3. The port is VMCHECKPOINT_TEST_S3_PORT (7480 by default).
# Memory is kept small (OSD memory target 1 GiB, small caches): the machine runs tests and VMs beside it.
set -euo pipefail

cmd=start
case "${1:-}" in stop|stop-rgw|purge|start) cmd=$1; shift ;; esac
root=${1:-/var/tmp/vmckpt-s3}
port=${VMCHECKPOINT_TEST_S3_PORT:-7480}
conf="$root/ceph.conf"
endpoint="http://127.0.0.1:$port"
user=vmckpt-test

fail() { echo "start-s3.sh: $*" >&2; exit 1; }
log() { echo "start-s3.sh: $*" >&2; }

pid_of() { # the running pid of a daemon, from its pid file
  local pid
  pid=$(cat "$root/run/$1.pid" 2>/dev/null || true)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
  return 0
}
stop_daemon() {
  local pid; pid=$(pid_of "$1")
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

case $cmd in
  stop) for d in client.rgw.local osd.0 mgr.x mon.a; do stop_daemon "$d"; done; exit 0 ;;
  stop-rgw) stop_daemon client.rgw.local; exit 0 ;;
  purge) for d in client.rgw.local osd.0 mgr.x mon.a; do stop_daemon "$d"; done; rm -rf "$root"; exit 0 ;;
esac

# Runs a daemon without the descriptors this script inherited beyond stdin/out/err: a daemon holding them would keep
# the caller's locks (flock on a build lock) and pipes (a test's captured output) open for as long as it lives.
detached() {
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
    done
    exec "$@" </dev/null >>"$root/log/start.log" 2>&1
  )
}

# ---- packages (Debian 12: Ceph 16.2)
need=()
for tool in ceph-mon:ceph-mon ceph-mgr:ceph-mgr ceph-osd:ceph-osd radosgw:radosgw radosgw-admin:radosgw ceph:ceph-common \
            monmaptool:ceph-base ceph-authtool:ceph-common s3cmd:s3cmd uuidgen:uuid-runtime; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || fail "missing ${need[*]}: install them as root (apt-get install ${need[*]}) or run ./build.ps1 Bootstrap"
  command -v apt-get >/dev/null || fail "missing ${need[*]} and no apt-get to install them"
  log "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 || fail "apt-get install ${need[*]} failed"
fi

ceph_() { ceph -c "$conf" --connect-timeout 20 "$@"; }

# ---- the gateway already answers: print and go (the warm path)
print_env() {
  local keys access secret
  keys=$(cat "$root/user.keys")
  access=${keys%% *}; secret=${keys#* }
  cat >"$root/s3cfg" <<EOF
[default]
access_key = $access
secret_key = $secret
host_base = 127.0.0.1:$port
host_bucket = 127.0.0.1:$port
use_https = False
signature_v2 = False
EOF
  echo "export AWS_ENDPOINT_URL=$endpoint"
  echo "export AWS_ACCESS_KEY_ID=$access"
  echo "export AWS_SECRET_ACCESS_KEY=$secret"
  echo "export AWS_REGION=us-east-1"
}
if [ -n "$(pid_of client.rgw.local)" ] && [ -s "$root/user.keys" ] && answers "$port"; then
  print_env
  exit 0
fi

mkdir -p "$root"/{run,log,mon,mgr/ceph-x,osd/ceph-0,rgw/ceph-rgw.local}
if [ ! -s "$root/fsid" ]; then
  answers 6789 && fail "another Ceph monitor already listens on 127.0.0.1:6789: stop it (start-s3.sh stop OTHER-ROOT)"
  uuidgen >"$root/fsid"
fi
fsid=$(cat "$root/fsid")

# cephx between the daemons, every key in one keyring that the monitor's mkfs imports (radosgw 16 does not
# authenticate with cephx off). S3 users sign every request with their own keys (SigV4).
cat >"$conf" <<EOF
[global]
  fsid = $fsid
  mon_host = v2:127.0.0.1:3300,v1:127.0.0.1:6789
  public_addr = 127.0.0.1
  keyring = $root/keyring
  client_mount_timeout = 30
  mon_warn_on_insecure_global_id_reclaim_allowed = false
  run_dir = $root/run
  admin_socket = $root/run/\$name.asok
  pid_file = $root/run/\$name.pid
  log_file = $root/log/\$name.log
  mon_cluster_log_file = $root/log/cluster.log
  crash_dir = $root/crash
  osd_pool_default_size = 1
  osd_pool_default_min_size = 1
  osd_pool_default_pg_num = 8
  osd_pool_default_pgp_num = 8
  osd_pool_default_pg_autoscale_mode = off
  osd_crush_chooseleaf_type = 0
  mon_allow_pool_size_one = true
  mon_warn_on_pool_no_redundancy = false
  mon_max_pg_per_osd = 1000
  mon_data_avail_warn = 2
  mon_data_avail_crit = 1
  # Small memory: one OSD holding test data needs little cache.
  osd_memory_target = 1073741824
  osd_memory_cache_min = 134217728
  bluestore_cache_autotune = true
  rbd_cache = false
[mon]
  mon_data = $root/mon/ceph-\$id
  mon_memory_target = 268435456
[mgr]
  mgr_data = $root/mgr/ceph-\$id
[osd]
  osd_data = $root/osd/ceph-\$id
  osd_objectstore = bluestore
  bluestore_block_path = $root/osd/ceph-\$id/block.img
  bluestore_block_create = true
  bluestore_block_size = 21474836480
  bluestore_fsck_on_mount = false
  osd_op_num_shards = 2
  osd_op_num_threads_per_shard = 1
  osd_crush_update_on_start = true
  osd_check_max_object_name_len_on_startup = false
[client.rgw.local]
  rgw_data = $root/rgw/ceph-rgw.local
  rgw_frontends = beast endpoint=127.0.0.1:$port
  rgw_dns_name = 127.0.0.1
  rgw_thread_pool_size = 64
  rgw_enable_usage_log = false
  rgw_max_chunk_size = 4194304
[client]
  log_file = $root/log/\$name.log
EOF

# ---- monitor
if [ ! -e "$root/mon/ceph-a/store.db" ]; then
  log "creating the monitor"
  rm -rf "$root/mon/ceph-a"
  rm -f "$root/keyring"
  ceph-authtool --create-keyring "$root/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$root/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$root/keyring" --gen-key -n mgr.x --cap mon 'allow profile mgr' --cap osd 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$root/keyring" --gen-key -n osd.0 --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *' >/dev/null
  ceph-authtool "$root/keyring" --gen-key -n client.rgw.local --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw' >/dev/null
  chmod 600 "$root/keyring"
  monmaptool --create --clobber --fsid "$fsid" --addv a '[v2:127.0.0.1:3300,v1:127.0.0.1:6789]' "$root/monmap" >/dev/null
  ceph-mon -c "$conf" --mkfs -i a --monmap "$root/monmap" --keyring "$root/keyring" >>"$root/log/start.log" 2>&1 || fail "ceph-mon --mkfs failed (see $root/log/start.log)"
fi
if [ -z "$(pid_of mon.a)" ]; then
  detached ceph-mon -c "$conf" -i a || fail "ceph-mon did not start (see $root/log/mon.a.log)"
fi
for _ in $(seq 1 100); do answers 6789 && break; sleep 0.1; done
answers 6789 || fail "the monitor does not answer on 127.0.0.1:6789 (see $root/log/mon.a.log)"

# ---- manager
if [ -z "$(pid_of mgr.x)" ]; then
  detached ceph-mgr -c "$conf" -i x || fail "ceph-mgr did not start (see $root/log/mgr.x.log)"
fi

# ---- one OSD, bluestore on a sparse file
if [ ! -s "$root/osd/ceph-0/whoami" ]; then
  log "creating the OSD"
  osd_uuid=$(uuidgen)
  id=$(ceph_ osd new "$osd_uuid") || fail "ceph osd new failed"
  [ "$id" = 0 ] || fail "the new OSD got id $id, not 0: $root holds a half-made cluster; run start-s3.sh purge $root"
  ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$root/log/start.log" 2>&1 || fail "ceph-osd --mkfs failed (see $root/log/start.log)"
fi
if [ -z "$(pid_of osd.0)" ]; then
  detached ceph-osd -c "$conf" -i 0 || fail "ceph-osd did not start (see $root/log/osd.0.log)"
fi
up=
for _ in $(seq 1 300); do
  if ceph_ osd dump 2>/dev/null | grep -q '^osd.0 up'; then up=1; break; fi
  sleep 0.2
done
[ -n "$up" ] || fail "osd.0 did not come up (see $root/log/osd.0.log)"

# ---- the S3 gateway
if [ -z "$(pid_of client.rgw.local)" ]; then
  answers "$port" && fail "another server already listens on 127.0.0.1:$port: stop it, or set VMCHECKPOINT_TEST_S3_PORT"
  detached radosgw -c "$conf" -n client.rgw.local || fail "radosgw did not start (see $root/log/client.rgw.local.log)"
fi
ok=
for _ in $(seq 1 600); do
  if answers "$port"; then ok=1; break; fi
  [ -n "$(pid_of client.rgw.local)" ] || sleep 0.5
  sleep 0.1
done
[ -n "$ok" ] || fail "radosgw does not answer on 127.0.0.1:$port (see $root/log/client.rgw.local.log)"

# ---- the S3 user
if [ ! -s "$root/user.keys" ]; then
  info=$(radosgw-admin -c "$conf" user info --uid="$user" 2>/dev/null \
      || radosgw-admin -c "$conf" user create --uid="$user" --display-name="VmCheckpoint tests" 2>>"$root/log/start.log") \
    || fail "radosgw-admin user create failed (see $root/log/start.log)"
  access=$(printf '%s' "$info" | python3 -c 'import json,sys; print(json.load(sys.stdin)["keys"][0]["access_key"])')
  secret=$(printf '%s' "$info" | python3 -c 'import json,sys; print(json.load(sys.stdin)["keys"][0]["secret_key"])')
  printf '%s %s\n' "$access" "$secret" >"$root/user.keys"
  chmod 600 "$root/user.keys"
fi
print_env
