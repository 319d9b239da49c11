#!/usr/bin/env bash
# Makes a tiny root filesystem that boots: Debian's cloud kernel
# (linux-image-cloud-amd64, downloaded once into ${XDG_CACHE_HOME:-$HOME/.cache}/outpost)
# and an initrd with the static Go init in images/testinit, which mounts the
# root by PARTUUID, prints /outpost-marker on the serial console and powers off.
#
#   scripts/testrootfs.sh /tmp/rootfs [MARKER]
#   outpost image build --rootfs /tmp/rootfs -o out/
#   qemu-system-x86_64 -machine q35 -cpu max -m 512 -nographic -no-reboot \
#     -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd \
#     -drive if=pflash,format=raw,file=vars.fd \  # a copy of /usr/share/OVMF/OVMF_VARS.fd
#     -drive file=out/outpost-connector-0.1.0.raw,format=raw,if=virtio
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./builder/internal/testrootfs/maketestrootfs "$@"
