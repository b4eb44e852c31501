# nooelint: oelint.var.mandatoryvar.HOMEPAGE, oelint.var.suggestedvar.BUGTRACKER, oelint.var.bbclassextend
# (The project has no public home page or bug tracker yet; a kernel module
# is target only.)
SUMMARY = "dmapingpong dma-buf exporter with DMA fences (Rust kernel module)"
DESCRIPTION = "Out-of-tree Rust kernel module dmapingpong.ko: binds to the \
               device tree node compatible with dmapingpong,exporter, \
               allocates buffers from its reserved CMA pool, exports them as \
               dma-bufs and hands out DMA fences as sync_files through \
               /dev/dmapingpong."
SECTION = "kernel"
LICENSE = "GPL-2.0-only"
LIC_FILES_CHKSUM = "file://dmapingpong.rs;beginline=1;endline=1;md5=50d2ba0afecd20f74c12a4bdbcfcfe61"

# module-rust skips this recipe unless KERNEL_FEATURES has "rust" (set it
# globally: local.conf or the distro).
inherit module-rust dmapingpong_source

# Sources by their path in the repository (dmapingpong_source.bbclass).
# nooelint: oelint.vars.fileextrapaths, oelint.vars.outofcontext
FILESEXTRAPATHS:prepend := "${DMAPINGPONG_TOP}:"

# From the repository (dmapingpong_source): dmapingpong.rs includes
# ../uapi/src/abi.rs (the ioctl ABI), hence the repository layout.
SRC_URI = "file://rust/driver/Kbuild \
           file://rust/driver/Makefile \
           file://rust/driver/dmapingpong.rs \
           file://rust/uapi/src/abi.rs \
           "

S = "${UNPACKDIR}/rust/driver"

EXTRA_OEMAKE += "KDIR=${STAGING_KERNEL_DIR}"

RPROVIDES:${PN} += "kernel-module-dmapingpong"

KERNEL_MODULE_AUTOLOAD += "dmapingpong"

CVE_PRODUCT = "dmapingpong"
