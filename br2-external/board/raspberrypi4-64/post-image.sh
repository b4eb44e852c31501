#!/bin/sh
# First post-image script of dmapingpong_raspberrypi4_64_defconfig: puts the
# exporter's overlay (images/dmapingpong.dtbo, from dts/rpi4.dtso) where the
# firmware looks for "dtoverlay=dmapingpong" of config.txt. Buildroot's
# board/raspberrypi4-64/post-image.sh then writes sdcard.img with it.
set -eu

overlays="${BINARIES_DIR}/rpi-firmware/overlays"
mkdir -p "${overlays}"
cp "${BINARIES_DIR}/dmapingpong.dtbo" "${overlays}/dmapingpong.dtbo"
if ! grep -qx 'dtoverlay=dmapingpong' "${BINARIES_DIR}/rpi-firmware/config.txt"; then
	echo "config.txt has no dtoverlay=dmapingpong line" >&2
	exit 1
fi
