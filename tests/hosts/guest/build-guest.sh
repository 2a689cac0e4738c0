#!/usr/bin/env bash
# Builds the tiny test guest into OUTDIR: vmlinuz (Debian's cloud kernel, taken from its .deb without installing
# it) and initrd.gz (busybox-static, the virtio modules and ./init). It boots under TCG in seconds with direct
# kernel boot; see ./init for what it does and tests/Pester/TestHelpers.psm1 (New-TestGuestVm) for its domain.
#   build-guest.sh OUTDIR
# Idempotent: the kernel package and the built initrd are cached under $VMCHECKPOINT_GUEST_CACHE
# (/var/cache/vmcheckpoint-guest), keyed by kernel version and the content of ./init, so a rerun only copies.
set -euo pipefail

out=${1:?usage: build-guest.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
cache=${VMCHECKPOINT_GUEST_CACHE:-/var/cache/vmcheckpoint-guest}
mkdir -p "$cache" "$out"

busybox=$(command -v busybox || true)
if [ -z "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
  # A dynamically linked busybox would need its libraries in the initrd.
  echo "build-guest.sh: needs a statically linked busybox (Debian package busybox-static; build.ps1 Bootstrap installs it)" >&2
  exit 1
fi

# The kernel: the package linux-image-cloud-amd64 points at (a small kernel with virtio as modules).
kernel_package() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }'; }
kpkg=$(kernel_package)
if [ -z "$kpkg" ]; then apt-get update -qq >/dev/null 2>&1 || true; kpkg=$(kernel_package); fi   # no package lists yet
[ -n "$kpkg" ] || { echo "build-guest.sh: apt-cache knows no linux-image-cloud-amd64 (apt-get update failed?)" >&2; exit 1; }
kver=${kpkg#linux-image-}
kroot="$cache/$kpkg"
if [ ! -f "$kroot/boot/vmlinuz-$kver" ]; then
  tmp=$(mktemp -d "$cache/download.XXXXXX")
  chmod 777 "$tmp"   # apt-get download drops to the _apt user when it can write there
  if ! (cd "$tmp" && apt-get download -q "$kpkg" >"$tmp/log" 2>&1); then
    # Package lists can be older than the archive's current kernel: refresh once.
    apt-get update -qq >/dev/null 2>&1 || true
    (cd "$tmp" && apt-get download -q "$kpkg" >"$tmp/log" 2>&1) || { cat "$tmp/log" >&2; rm -rf "$tmp"; exit 1; }
  fi
  rm -rf "$kroot.part"
  dpkg-deb -x "$tmp"/"$kpkg"_*.deb "$kroot.part"   # extracted, never installed
  rm -rf "$tmp" "$kroot"
  mv "$kroot.part" "$kroot"
fi

# The initrd, keyed by what goes into it.
key=$( (echo "$kver"; "$busybox" | head -1; cat "$here/init" "$here/build-guest.sh") | sha256sum | cut -c1-16)
initrd="$cache/initrd-$key.gz"
if [ ! -f "$initrd" ]; then
  root=$(mktemp -d "$cache/initrd.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root"/{bin,dev,proc,sys,tmp}
  cp "$busybox" "$root/bin/busybox"
  for applet in $("$busybox" --list); do [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"; done
  mknod -m 600 "$root/dev/console" c 5 1
  install -m 755 "$here/init" "$root/init"
  # virtio_pci needs virtio, virtio_ring and the pci transport helpers; modules.dep (the .deb ships none)
  # comes from busybox depmod, and the guest's busybox modprobe follows it.
  mods="kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio_pci.ko
        kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko
        kernel/drivers/block/virtio_blk.ko kernel/drivers/char/virtio_console.ko"
  for m in $mods; do
    src="$kroot/lib/modules/$kver/$m"
    [ -f "$src" ] || { echo "build-guest.sh: $kpkg has no $m" >&2; exit 1; }
    install -D -m 644 "$src" "$root/lib/modules/$kver/$m"
  done
  "$busybox" depmod -b "$root" "$kver"
  (cd "$root" && find . | LC_ALL=C sort | "$busybox" cpio -o -H newc 2>/dev/null | gzip -9 >"$initrd.part")
  find "$cache" -maxdepth 1 -name 'initrd-*.gz' -delete   # builds of an older ./init
  mv "$initrd.part" "$initrd"
fi

install -m 644 "$kroot/boot/vmlinuz-$kver" "$out/vmlinuz"
install -m 644 "$initrd" "$out/initrd.gz"
echo "$out"
