# nooelint: oelint.var.suggestedvar.BUGTRACKER
# (The project has no public bug tracker yet.)
SUMMARY = "Small image with the dmapingpong driver and its boot-time self-test"
DESCRIPTION = "core-image-minimal plus dmapingpong.ko (autoloaded), the \
               dmapingpong tool and dmapingpong-selftest, which runs once at \
               boot and prints its KTAP report on the console."
SECTION = "images"
LICENSE = "MIT"

# OE-core's, found through BBPATH.
# nooelint: oelint.file.requirenotfound
require recipes-core/images/core-image-minimal.bb

# Only with the "dmapingpong" distro feature (and KERNEL_FEATURES "rust"):
# it builds the kernel with Rust and the patch series, and the packages below
# (skipped without it, with that reason, rather than "Nothing RPROVIDES").
inherit features_check

REQUIRED_DISTRO_FEATURES = "dmapingpong"

IMAGE_INSTALL:append = " dmapingpong-module dmapingpong dmapingpong-selftest"

CVE_PRODUCT = "dmapingpong"

# qemuarm64: runqemu boots with QEMU's virt tree merged with
# dts/qemu-virt.dtso (dmapingpong-dtb), with room for the 32 MiB CMA pool.
EXTRA_IMAGEDEPENDS:append:qemuarm64 = " dmapingpong-dtb"
# nooelint: oelint.vars.mispell.unknown
QB_DTB:qemuarm64 = "dmapingpong-qemuarm64.dtb"
QB_MEM:qemuarm64 = "-m 512"

# Raspberry Pi 4: the overlay (dmapingpong-rpi-overlay, meta-dmapingpong's
# dynamic layer for meta-raspberrypi) into the boot partition as
# overlays/dmapingpong.dtbo, where config.txt's dtoverlay=dmapingpong
# (rpi-config) finds it.
# nooelint: oelint.vars.specific
IMAGE_BOOT_FILES:append:raspberrypi4 = " devicetree/rpi4.dtbo;overlays/dmapingpong.dtbo"
DMAPINGPONG_BOOT_DEPENDS = ""
# nooelint: oelint.vars.specific
DMAPINGPONG_BOOT_DEPENDS:raspberrypi4 = "dmapingpong-rpi-overlay:do_deploy"
# nooelint: oelint.vars.mispell.unknown
do_image_wic[depends] += "${DMAPINGPONG_BOOT_DEPENDS}"
