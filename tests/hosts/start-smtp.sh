#!/usr/bin/env bash
# A real SMTP server for the notification tests, on this machine only: Debian's python3-aiosmtpd listening on
# 127.0.0.1, delivering every mail it accepts into a Maildir (one file per mail in MAILDIR/new).
#   start-smtp.sh [start] [ROOT [PORT]]  starts it if it is not running there; prints "PORT MAILDIR"
#   start-smtp.sh stop [ROOT]            stops it (the Maildir stays)
# ROOT defaults to /var/tmp/vmckpt-smtp, PORT to 2525. Idempotent: a server already running for ROOT on PORT is kept.
set -euo pipefail

cmd=start
case "${1:-}" in stop|start) cmd=$1; shift ;; esac
root=${1:-/var/tmp/vmckpt-smtp}
port=${2:-2525}
maildir="$root/Maildir"
pidfile="$root/aiosmtpd.pid"
log="$root/aiosmtpd.log"
# Debian's interpreter, which python3-aiosmtpd installs into: python3 on PATH may be another one without it.
python=/usr/bin/python3

fail() { echo "start-smtp.sh: $*" >&2; exit 1; }
server_pid() {
  local pid
  pid=$(cat "$pidfile" 2>/dev/null || true)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
  return 0
}
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
stop_server() {
  local pid; pid=$(server_pid)
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile" "$root/port"
}

if [ "$cmd" = stop ]; then stop_server; exit 0; fi

"$python" -c 'import aiosmtpd' 2>/dev/null || fail "aiosmtpd is missing: run ./build.ps1 Bootstrap (Debian package python3-aiosmtpd)"
if [ -n "$(server_pid)" ] && [ "$(cat "$root/port" 2>/dev/null)" = "$port" ] && answers "$port"; then
  echo "$port $maildir"
  exit 0
fi
stop_server
answers "$port" && fail "another server already listens on 127.0.0.1:$port: give another port"

mkdir -p "$maildir"/{tmp,new,cur}
# Detached, without the descriptors this script inherited beyond stdin/out/err: a server holding them would keep
# the caller's pipes open for as long as it lives.
(
  for fd in /proc/$BASHPID/fd/*; do
    fd=${fd##*/}
    [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
  done
  exec setsid "$python" -m aiosmtpd -n -l "127.0.0.1:$port" -c aiosmtpd.handlers.Mailbox "$maildir" </dev/null >"$log" 2>&1
) &
echo $! >"$pidfile"
echo "$port" >"$root/port"
for _ in $(seq 1 100); do
  answers "$port" && break
  kill -0 "$(cat "$pidfile")" 2>/dev/null || fail "aiosmtpd exited at start: $(tail -5 "$log" 2>/dev/null | tr '\n' ' ')"
  sleep 0.1
done
answers "$port" || fail "aiosmtpd does not answer on 127.0.0.1:$port (see $log)"
echo "$port $maildir"
