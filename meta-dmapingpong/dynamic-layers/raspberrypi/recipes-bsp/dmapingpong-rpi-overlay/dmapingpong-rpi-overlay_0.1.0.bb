# nooelint: oelint.var.mandatoryvar.HOMEPAGE, oelint.var.suggestedvar.BUGTRACKER, oelint.var.bbclassextend
# (The project has no public home page or bug tracker yet; a device tree
# overlay is machine specific.)
SUMMARY = "Raspberry Pi device tree overlay of dmapingpong (dmapingpong.dtbo)"
DESCRIPTION = "dts/rpi4.dtso of the dmapingpong repository compiled with \
               OE-core's devicetree class: a 32 MiB reusable CMA pool, the \
               exporter node and its BCM2835 DMA channel. The image puts it \
               into the boot partition as overlays/dmapingpong.dtbo, which \
               config.txt's dtoverlay=dmapingpong (rpi-config) applies."
SECTION = "bsp"
LICENSE = "GPL-2.0-only | MIT"
LIC_FILES_CHKSUM = "file://dts/rpi4.dtso;beginline=1;endline=1;md5=68e3a474299667b744905bbc194f61c3"

inherit devicetree dmapingpong

# dts/rpi4.dtso is for the BCM2711 (Raspberry Pi 4) only.
COMPATIBLE_MACHINE = "^raspberrypi4$"

# devicetree.bbclass provides virtual/dtb, the machine's device tree; this
# is only an overlay, which must not stand in the way of a BSP's own.
PROVIDES:remove = "virtual/dtb"

# Sources (dmapingpong_source.bbclass): the dmapingpong git repository, or
# the checkout that holds the layer.
# nooelint: oelint.vars.fileextrapaths, oelint.vars.outofcontext
FILESEXTRAPATHS:prepend := "${@dmapingpong_filesextrapaths(d, '.')}"
SRC_URI = "${@dmapingpong_src_uri(d, 'dts/rpi4.dtso')}"

S = "${DMAPINGPONG_UNPACK}"

# Deployed as ${DEPLOY_DIR_IMAGE}/devicetree/rpi4.dtbo. The overlay refers
# to the base tree by its labels only (resolved by the firmware): no kernel
# headers, so no dependency on the kernel's do_configure.
# (OE-core's devicetree class variables.)
# nooelint: oelint.vars.mispell
DT_FILES_PATH = "${S}/dts"
# nooelint: oelint.vars.mispell.unknown
DT_FILES = "rpi4.dtso"
# nooelint: oelint.vars.mispell.unknown
KERNEL_INCLUDE = ""

CVE_PRODUCT = "dmapingpong"
