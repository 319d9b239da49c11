#!/usr/bin/env bash
# The main job on the embedded default (make demo): `outpost lab up --pair`.
# It builds the connector appliance from the embedded spec (Debian packages
# with mmdebstrap, cached; outpost-firstboot and outpost-connector from this
# checkout), starts a control plane and two VMs under QEMU with OVMF in a
# network of their own (a network namespace as root, a user namespace
# without root), shows the table once both are enrolled and healthy, then
# tears the lab down. KEEP=1 leaves it up; MEMORY=2048 for small machines.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${LAB_DIR:-$(mktemp -d)/lab}
if [[ ${KEEP:-} != 1 ]]; then
  trap 'bin/outpost lab down --dir "$dir" >/dev/null 2>&1 || true' EXIT
fi
bin/outpost lab up --pair --dir "$dir" ${MEMORY:+--memory "$MEMORY"}
if [[ ${KEEP:-} == 1 ]]; then
  echo "demo: KEEP=1: the lab stays up; bin/outpost lab status --dir $dir; bin/outpost lab down --dir $dir" >&2
fi
