#!/usr/bin/env bash
# A real syslog daemon for the notification tests, on this machine only: Debian's rsyslogd with its own
# configuration, listening on a unix datagram socket of its own (as /dev/log is) and on UDP 127.0.0.1:PORT, writing
# every line it receives to one file. The machine's /dev/log is left alone.
#   start-syslog.sh [start] [ROOT [PORT]]  starts it if it is not running there; prints "SOCKET PORT LOGFILE"
#   start-syslog.sh stop [ROOT]            stops it (the log file stays)
# ROOT defaults to /var/tmp/vmckpt-syslog, PORT to 5514. Idempotent: a daemon already running for ROOT on PORT is kept.
# Each line of LOGFILE: TIME HOST TAG FACILITY.SEVERITY MESSAGE.
set -euo pipefail

cmd=start
case "${1:-}" in stop|start) cmd=$1; shift ;; esac
root=${1:-/var/tmp/vmckpt-syslog}
port=${2:-5514}
conf="$root/rsyslog.conf"
socket="$root/log.sock"
logfile="$root/messages.log"
pidfile="$root/rsyslogd.pid"

fail() { echo "start-syslog.sh: $*" >&2; exit 1; }
daemon_pid() {
  local pid
  pid=$(cat "$pidfile" 2>/dev/null || true)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
  return 0
}
stop_daemon() {
  local pid; pid=$(daemon_pid)
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile" "$root/port"
}
# A line sent through both inputs must land in the log file: the whole way works, not only the process.
probe() {
  local id="probe-$$-$RANDOM"
  logger -d -u "$socket" -t vmckpt-probe "$id unix" 2>/dev/null || return 1
  logger -d -n 127.0.0.1 -P "$port" -t vmckpt-probe "$id udp" 2>/dev/null || return 1
  for _ in $(seq 1 50); do
    grep -q "$id unix" "$logfile" 2>/dev/null && grep -q "$id udp" "$logfile" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

if [ "$cmd" = stop ]; then stop_daemon; exit 0; fi

command -v rsyslogd >/dev/null || fail "rsyslogd is missing: run ./build.ps1 Bootstrap (Debian package rsyslog)"
command -v logger >/dev/null || fail "logger is missing (Debian package bsdutils)"
if [ -n "$(daemon_pid)" ] && [ "$(cat "$root/port" 2>/dev/null)" = "$port" ] && [ -S "$socket" ] && probe; then
  echo "$socket $port $logfile"
  exit 0
fi
stop_daemon

mkdir -p "$root/work"
cat >"$conf" <<CONF
global(workDirectory="$root/work" maxMessageSize="8k")
# Our own socket only: SysSock.Use="off" leaves /dev/log to the machine.
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="$socket" CreatePath="on")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="$port")
template(name="TestLine" type="string" string="%timegenerated:::date-rfc3339% %hostname% %syslogtag% %syslogfacility-text%.%syslogseverity-text% %msg%\n")
*.* action(type="omfile" file="$logfile" template="TestLine")
CONF
rsyslogd -N1 -f "$conf" >"$root/check.log" 2>&1 || fail "rsyslogd refuses $conf: $(tr '\n' ' ' <"$root/check.log")"
rm -f "$socket"
# Detached (no inherited descriptors beyond stdin/out/err, its own session); -n: no fork, so its pid is known.
(
  for fd in /proc/$BASHPID/fd/*; do
    fd=${fd##*/}
    [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
  done
  exec setsid rsyslogd -n -f "$conf" -i "$pidfile.rsyslog" </dev/null >"$root/rsyslogd.log" 2>&1
) &
echo $! >"$pidfile"
echo "$port" >"$root/port"
for _ in $(seq 1 100); do
  [ -S "$socket" ] && break
  kill -0 "$(cat "$pidfile")" 2>/dev/null || fail "rsyslogd exited at start: $(tail -5 "$root/rsyslogd.log" 2>/dev/null | tr '\n' ' ')"
  sleep 0.1
done
[ -S "$socket" ] || fail "rsyslogd made no socket $socket (see $root/rsyslogd.log)"
probe || fail "a line sent to $socket and udp://127.0.0.1:$port did not reach $logfile (see $root/rsyslogd.log)"
echo "$socket $port $logfile"
