#!/usr/bin/env bash
# The main job on the embedded default: build the connector appliance from
# the embedded image spec (images/connector/image.yaml) and a small root
# filesystem (Debian's cloud kernel + a static Go init, scripts/testrootfs.sh),
# write OVA and qcow2 to out/, then boot the qcow2 under QEMU with OVMF and
# show its serial console. Exits 0 when the appliance booted.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

marker="outpost-demo-$(date +%s)"
scripts/testrootfs.sh "$work/rootfs" "$marker"
bin/outpost image build --rootfs "$work/rootfs" --format ova,qcow2 -o "$out"

cp /usr/share/OVMF/OVMF_VARS.fd "$work/vars.fd"
echo "demo: booting $out/outpost-connector-0.1.0.qcow2 (QEMU, OVMF, TCG); serial console follows" >&2
set +e
timeout 180 qemu-system-x86_64 -machine q35 -cpu max -m 512 -smp 1 \
  -nographic -no-reboot -monitor none -serial stdio -net none \
  -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd \
  -drive if=pflash,format=raw,unit=1,file="$work/vars.fd" \
  -drive file="$out/outpost-connector-0.1.0.qcow2",format=qcow2,if=virtio </dev/null | tee "$work/console.log"
set -e
if grep -q "OUTPOST-MARKER: $marker" "$work/console.log"; then
  echo "demo: the appliance booted from the qcow2 and read its root filesystem; images in $out/" >&2
else
  echo "demo: the marker did not appear on the serial console; see the output above" >&2
  exit 1
fi
