#!/usr/bin/env bash
# The main job on the embedded default (make demo). As root it is
# `outpost lab up --pair`: the connector appliance built from the embedded
# spec (Debian packages with mmdebstrap, cached; outpost-firstboot and
# outpost-connector from this checkout), a control plane, and two VMs under
# QEMU with OVMF in a network namespace of their own; it shows the table once
# both are healthy, then tears the lab down (KEEP=1 leaves it up).
# Without root it builds OVA and qcow2 into out/, starts a control plane on
# loopback and boots one VM on QEMU's user-mode network, which reaches only
# the control plane (restrict=on, one forwarded port), and shows it enrolled.
set -euo pipefail
cd "$(dirname "$0")/.."

# As root: the lab, a pair in its own network namespace (DHCP, DNS, NTP).
if [[ $(id -u) -eq 0 ]]; then
  dir=$(mktemp -d)/lab
  if [[ ${KEEP:-} != 1 ]]; then trap 'bin/outpost lab down --dir "$dir" || true' EXIT; fi
  bin/outpost lab up --pair --dir "$dir" ${MEMORY:+--memory $MEMORY}
  if [[ ${KEEP:-} == 1 ]]; then
    echo "demo: KEEP=1: the lab stays up; 'bin/outpost lab status --dir $dir', 'bin/outpost lab down --dir $dir'" >&2
  fi
  exit 0
fi

# Without root: one VM on QEMU's user-mode network.
out=${OUT:-out}
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() {
  if [[ ${KEEP:-} == 1 ]]; then
    echo "demo: KEEP=1: server and VM left running (PIDs ${pids[*]}), files in $work" >&2
    return
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

bin/outpost image build --format ova,qcow2 -o "$out"
image=$(ls -t "$out"/outpost-connector-*.qcow2 | head -1)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -m 700 "$work/cp"
bin/outpost server --data "$work/cp" --listen "127.0.0.1:$port" --hostname 10.0.2.100:8443 >"$work/server.log" 2>&1 &
pids+=($!)
export OUTPOST_CONFIG=$work/cp/admin.conf OUTPOST_SERVER=https://127.0.0.1:$port
for _ in $(seq 100); do
  [[ -f $OUTPOST_CONFIG ]] && bin/outpost groups list >/dev/null 2>&1 && break
  sleep 0.2
done
bin/outpost groups create demo --location "make demo" >/dev/null
key=$(bin/outpost keys create --name Demo --group demo --max-uses 1 2>/dev/null)
umask 077
printf 'outpost.provision_key=%s\noutpost.dns.servers=10.0.2.3\n' "$key" >"$work/fwcfg"

qemu-img create -q -f qcow2 -b "$(realpath "$image")" -F qcow2 "$work/disk.qcow2"
cp /usr/share/OVMF/OVMF_VARS.fd "$work/vars.fd"
echo "demo: booting $image under QEMU (OVMF, TCG); the control plane is 10.0.2.100:8443 inside the VM" >&2
start=$(date +%s)
qemu-system-x86_64 -machine q35 -accel tcg -cpu max -smp 2 -m 2048 -display none -monitor none \
  -serial "file:$work/serial.log" -device virtio-rng-pci \
  -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd \
  -drive if=pflash,format=raw,unit=1,file="$work/vars.fd" \
  -drive file="$work/disk.qcow2",format=qcow2,if=virtio \
  -netdev "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:8443-cmd:socat - TCP:127.0.0.1:$port" \
  -device virtio-net-pci,netdev=n0,mac=00:50:56:00:de:01 \
  -fw_cfg name=opt/outpost/config,file="$work/fwcfg" >"$work/qemu.log" 2>&1 &
pids+=($!)

shown=0
for _ in $(seq 600); do
  if [[ -f $work/serial.log ]]; then
    lines=$(grep -a -E 'outpost-(firstboot|connector)\[' "$work/serial.log" || true)
    n=$(printf '%s' "$lines" | grep -c . || true)
    if ((n > shown)); then printf '%s\n' "$lines" | tail -n $((n - shown)) | sed 's/^/  console: /' >&2; shown=$n; fi
  fi
  if bin/outpost connectors list --json 2>/dev/null | grep -q '"last_seen": "2'; then
    echo "demo: Demo-1 enrolled and heartbeating $(($(date +%s) - start)) s after power-on" >&2
    bin/outpost connectors list
    exit 0
  fi
  if ! kill -0 "${pids[1]}" 2>/dev/null; then
    echo "demo: QEMU exited:" >&2; cat "$work/qemu.log" >&2; exit 1
  fi
  sleep 0.5
done
echo "demo: the appliance did not enroll within 5 minutes; serial console:" >&2
tail -50 "$work/serial.log" >&2
exit 1
