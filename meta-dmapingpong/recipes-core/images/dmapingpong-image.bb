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

IMAGE_INSTALL:append = " dmapingpong-module dmapingpong dmapingpong-selftest"

CVE_PRODUCT = "dmapingpong"

# qemuarm64: runqemu boots with QEMU's virt tree merged with
# dts/qemu-virt.dtso (dmapingpong-dtb), with room for the 32 MiB CMA pool.
EXTRA_IMAGEDEPENDS:append:qemuarm64 = " dmapingpong-dtb"
# nooelint: oelint.vars.mispell.unknown
QB_DTB:qemuarm64 = "dmapingpong-qemuarm64.dtb"
QB_MEM:qemuarm64 = "-m 512"

# Raspberry Pi: the kernel builds the overlay (the layer's append of
# linux-raspberrypi); listing it here puts it into the boot partition's
# overlays/ directory (meta-raspberrypi makes IMAGE_BOOT_FILES from
# KERNEL_DEVICETREE).
# nooelint: oelint.vars.mispell.unknown, oelint.vars.specific
RPI_KERNEL_DEVICETREE_OVERLAYS:append:rpi = " overlays/dmapingpong.dtbo"
