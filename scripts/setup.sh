#!/usr/bin/env bash
# Installs what outpost's tests and demo need on a fresh Debian 12 machine.
# Safe to run again: it installs only what is missing.
set -euo pipefail
pkgs=(qemu-system-x86 qemu-utils ovmf dnsmasq-base chrony postgresql e2fsprogs dosfstools
      libvmdk-utils python3-libvmdk systemd-boot-efi mmdebstrap socat iproute2 cpio zstd xz-utils openssl git make curl
      chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The boot tests download Debian's cloud kernel with apt-get download, which
# needs the package lists.
if ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
  $sudo apt-get update -q
fi
if ! command -v go >/dev/null 2>&1; then
  echo "setup: Go is not on PATH; install Go 1.26 (/usr/local/go/bin)" >&2
  exit 1
fi
go mod download
