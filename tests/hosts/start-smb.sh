#!/usr/bin/env bash
# A real SMB share for the tests, on this machine only: Debian's samba (smbd) listening on 127.0.0.1 alone,
# with its own configuration and state under one folder, exporting a guest-writable share backed by a local
# folder, mounted through smbnetfs (FUSE, libsmbclient). Files written under the printed path travel over SMB
# to samba, which stores them in the backing folder (ROOT/share).
#   start-smb.sh [ROOT]       starts smbd and the mount if they are not running; prints MOUNT/127.0.0.1/vmckpt
#   start-smb.sh stop [ROOT]  unmounts and stops that smbd (the backing folder stays)
#   start-smb.sh stop-smbd [ROOT]  stops smbd only: the mount stays and its requests fail (an unreachable share)
# ROOT defaults to /var/tmp/vmckpt-smb. smbnetfs runs with HOME=ROOT/home, so its ~/.smb is ROOT/home/.smb
# and the user's own ~/.smb is left alone.
set -euo pipefail

cmd=start
case "${1:-}" in stop|stop-smbd|start) cmd=$1; shift ;; esac
root=${1:-/var/tmp/vmckpt-smb}
share=vmckpt
conf="$root/smb.conf"
backing="$root/share"
mnt="$root/mnt"
home="$root/home"
path="$mnt/127.0.0.1/$share"

is_mounted() { grep -qs " $mnt fuse" /proc/mounts; }
smbd_pid() {
  local pid
  pid=$(cat "$root/run/smbd-smb.conf.pid" 2>/dev/null || cat "$root/run/smbd.pid" 2>/dev/null || true)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
  return 0
}
stop_smbd() {
  local pid; pid=$(smbd_pid)
  if [ -n "$pid" ]; then
    # smbd forks one child per client connection: stop those of this smbd too.
    local children; children=$(pgrep -P "$pid" 2>/dev/null || true)
    kill "$pid" $children 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
}
unmount() {
  if is_mounted || [ -n "$(grep -s " $mnt " /proc/mounts)" ]; then
    fusermount -u "$mnt" 2>/dev/null || fusermount -uz "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
  fi
  local pid; pid=$(cat "$root/smbnetfs.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
  rm -f "$root/smbnetfs.pid"
}

case $cmd in
  stop) unmount; stop_smbd; exit 0 ;;
  stop-smbd) stop_smbd; exit 0 ;;
esac

fail() { echo "start-smb.sh: $*" >&2; exit 1; }
# Runs a daemon without the descriptors this script inherited beyond stdin/out/err: a daemon holding them would
# keep the caller's locks (flock on a build lock) and pipes open for as long as it lives.
detached() {
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
    done
    exec "$@" </dev/null >/dev/null 2>&1
  )
}
for tool in smbd smbnetfs fusermount; do
  command -v "$tool" >/dev/null || fail "$tool is missing: run ./build.ps1 Bootstrap (Debian packages samba, smbnetfs, fuse3)"
done
[ -c /dev/fuse ] || fail "/dev/fuse does not exist: FUSE cannot work here (a container needs --device /dev/fuse), so the SMB share cannot be mounted"

# A mount whose smbnetfs died (killed with the session or the CI run that started it) stays in the mount table
# and answers "Transport endpoint is not connected" to everything, even mkdir -p: take it down first.
if grep -qs " $mnt " /proc/mounts && ! stat "$mnt" >/dev/null 2>&1; then unmount; fi
mkdir -p "$root"/{private,lock,state,cache,run,log,ncalrpc} "$backing" "$mnt" "$home/.smb"
chmod 0777 "$backing"   # the guest account (nobody) writes here
cat >"$conf" <<EOF
[global]
  server role = standalone server
  interfaces = lo
  bind interfaces only = yes
  smb ports = 445
  disable netbios = yes
  map to guest = Bad User
  guest account = nobody
  private dir = $root/private
  lock directory = $root/lock
  state directory = $root/state
  cache directory = $root/cache
  pid directory = $root/run
  ncalrpc dir = $root/ncalrpc
  passdb backend = tdbsam:$root/private/passdb.tdb
  log file = $root/log/smbd.log
  max log size = 1000
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
  server min protocol = SMB2_02

[$share]
  path = $backing
  guest ok = yes
  guest only = yes
  read only = no
  browseable = yes
  create mask = 0666
  directory mask = 0777
EOF

if [ -z "$(smbd_pid)" ]; then
  if (exec 3<>/dev/tcp/127.0.0.1/445) 2>/dev/null; then
    fail "another server already listens on 127.0.0.1:445 (a system samba?): stop it, the share tests need that port"
  fi
  detached smbd -D -s "$conf" || fail "smbd did not start (see $root/log/smbd.log)"
fi
ok=
for _ in $(seq 1 100); do
  if (exec 3<>/dev/tcp/127.0.0.1/445) 2>/dev/null; then ok=1; break; fi
  sleep 0.1
done
[ -n "$ok" ] || fail "smbd does not answer on 127.0.0.1:445 (see $root/log/smbd.log)"

# smbnetfs reads ~/.smb of the HOME it runs with: its configuration, libsmbclient's smb.conf and the guest login.
cat >"$home/.smb/smbnetfs.conf" <<EOF
include "smbnetfs.auth"
smb_query_browsers false
EOF
echo 'auth "guest" ""' >"$home/.smb/smbnetfs.auth"
chmod 600 "$home/.smb/smbnetfs.auth"
printf '[global]\n  client min protocol = SMB2_02\n' >"$home/.smb/smb.conf"

if is_mounted && ! ls "$path" >/dev/null 2>&1; then unmount; fi   # a mount left from a stopped run
if ! is_mounted; then
  HOME="$home" detached smbnetfs "$mnt" -o "config=$home/.smb/smbnetfs.conf,log_file=$root/log/smbnetfs.log" \
    || fail "smbnetfs could not mount $mnt (FUSE unavailable?) (see $root/log/smbnetfs.log)"
  pgrep -n -f -- "smbnetfs $mnt" >"$root/smbnetfs.pid" 2>/dev/null || true
fi
for _ in $(seq 1 100); do
  [ -d "$path" ] && break
  sleep 0.1
done
[ -d "$path" ] || fail "$path is not reachable through smbnetfs (see $root/log/smbnetfs.log)"
# The mount must really reach samba: a file written through it appears in the backing folder.
probe=".probe-$$"
echo probe >"$path/$probe" || fail "cannot write through $path"
[ -f "$backing/$probe" ] || fail "$path/$probe did not land in $backing"
rm -f "$path/$probe"
echo "$path"
