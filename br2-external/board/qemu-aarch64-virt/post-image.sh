#!/bin/sh
# Post-image script of dmapingpong_qemu_aarch64_virt_defconfig: the device
# tree QEMU generates for the machine, with the exporter's overlay applied
# (images/dmapingpong-virt.dtb: dts/qemu-virt.dtso, its reserved CMA pool and
# exporter node), and images/start-qemu.sh, which boots the image with it.
set -eu

# The machine of the generated device tree and of start-qemu.sh (its memory
# size and CPUs are in the tree): as scripts/run-qemu boots it.
MACHINE="-M virt -cpu cortex-a57 -smp 2 -m 512"

cd "${BINARIES_DIR}"
# shellcheck disable=SC2086 # MACHINE is a list of arguments
"${HOST_DIR}/bin/qemu-system-aarch64" ${MACHINE} -nographic -nic none \
	-machine dumpdtb=qemu-virt.dtb >/dev/null
"${HOST_DIR}/bin/fdtoverlay" -i qemu-virt.dtb -o dmapingpong-virt.dtb dmapingpong.dtbo

cat >start-qemu.sh <<EOT
#!/bin/sh
# Boots the dmapingpong image (written by the post-image script of
# dmapingpong_qemu_aarch64_virt_defconfig). Log in as root; the self-test's
# KTAP report is on the console at boot. Ctrl-a x quits.
cd "\$(dirname "\$0")"
exec "\${QEMU:-${HOST_DIR}/bin/qemu-system-aarch64}" ${MACHINE} -nographic \\
	-kernel Image -dtb dmapingpong-virt.dtb \\
	-append "rootwait root=/dev/vda console=ttyAMA0" \\
	-drive file=rootfs.ext4,if=none,format=raw,id=hd0 -device virtio-blk-device,drive=hd0 \\
	-netdev user,id=eth0 -device virtio-net-device,netdev=eth0 "\$@"
EOT
chmod +x start-qemu.sh
