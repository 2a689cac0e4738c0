#!/usr/bin/env bash
# Starts libvirt for the tests, without systemd: the host's own daemons, and optionally a second "host": a
# second system-mode libvirtd in its own mount namespace, with its own /run, /etc/libvirt, /var/lib/libvirt and
# /var/log/libvirt, answering at qemu+unix:///system?socket=$ROOT/sock/libvirt-sock. It runs qemu as
# libvirt-qemu with dynamic ownership like any host and sees the rest of the file system as a shared mount.
#   start-libvirt.sh            the first host (qemu:///system)
#   start-libvirt.sh second DIR the second host, state under DIR; prints its URI
set -euo pipefail

wait_for() { for _ in $(seq 1 100); do [ -S "$1" ] && return 0; sleep 0.1; done; echo "no socket $1" >&2; return 1; }

if [ "${1:-}" = "stop" ]; then
  # Stops a second host started with 'second DIR': its daemons and the VMs they run.
  root=${2:?state folder}
  for pidfile in "$root/run/libvirtd.pid" "$root/run/virtlogd.pid" "$root"/run/libvirt/qemu/*.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null || true
  done
  exit 0
fi

# udev gives /dev/kvm to the kvm group on a normal host; without udev it stays root-only, and libvirt then
# finds its cached qemu capabilities stale on every call (probed with KVM, checked as libvirt-qemu without):
# a 30-second re-probe per domain definition.
if [ -c /dev/kvm ] && getent group kvm >/dev/null; then chgrp kvm /dev/kvm && chmod 660 /dev/kvm; fi

if [ "${1:-}" != "second" ]; then
  if ! virsh -c qemu:///system version >/dev/null 2>&1; then
    pgrep -x virtlogd >/dev/null || virtlogd -d
    pgrep -x libvirtd >/dev/null || libvirtd -d
    wait_for /run/libvirt/libvirt-sock
    for _ in $(seq 1 50); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2; done
  fi
  echo qemu:///system
  exit 0
fi

root=${2:?state folder}
sock="$root/sock/libvirt-sock"
if [ -S "$sock" ] && virsh -c "qemu+unix:///system?socket=$sock" version >/dev/null 2>&1; then
  echo "qemu+unix:///system?socket=$sock"; exit 0
fi
rm -rf "$root"; mkdir -p "$root"/{run,etc,lib,log,sock}
cp -a /etc/libvirt/. "$root/etc/"
rm -f "$root"/etc/qemu/*.xml "$root"/etc/qemu/autostart/*.xml 2>/dev/null || true
# The folder tree of /var/lib/libvirt with its owners and modes, none of the first host's state.
(cd /var/lib/libvirt && find . -type d -print0 | while IFS= read -r -d '' d; do
   mkdir -p "$root/lib/$d"; chown --reference="$d" "$root/lib/$d"; chmod --reference="$d" "$root/lib/$d"; done)
echo "unix_sock_dir = \"$root/sock\"" >> "$root/etc/libvirtd.conf"
chmod 755 "$root" "$root/sock"
unshare -m --propagation private bash -c "
  mount --bind '$root/run' /run
  mount --bind '$root/etc' /etc/libvirt
  mount --bind '$root/lib' /var/lib/libvirt
  mount --bind '$root/log' /var/log/libvirt
  mkdir -p /run/libvirt
  virtlogd -d
  libvirtd -d
" </dev/null >/dev/null 2>&1
wait_for "$sock"
for _ in $(seq 1 50); do virsh -c "qemu+unix:///system?socket=$sock" version >/dev/null 2>&1 && break; sleep 0.2; done
echo "qemu+unix:///system?socket=$sock"
