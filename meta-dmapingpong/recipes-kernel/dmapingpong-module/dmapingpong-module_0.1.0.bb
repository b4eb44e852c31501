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
# globally: local.conf or the distro); dmapingpong.bbclass skips it without
# the "dmapingpong" distro feature, which also puts Rust and the patch series
# into the kernel (the layer's kernel appends).
inherit module-rust dmapingpong

# Sources (dmapingpong_source.bbclass): the dmapingpong git repository, or
# the checkout that holds the layer. The driver's crate root dmapingpong.rs
# includes its other files and ../uapi/src/abi.rs (the ioctl ABI), hence the
# repository layout.
# nooelint: oelint.vars.fileextrapaths, oelint.vars.outofcontext
FILESEXTRAPATHS:prepend := "${@dmapingpong_filesextrapaths(d, '.')}"
SRC_URI = "${@dmapingpong_src_uri(d, 'rust/driver/Kbuild rust/driver/Makefile rust/driver/buffer.rs rust/driver/debugfs.rs rust/driver/dmapingpong.rs rust/driver/driver.rs rust/driver/engine.rs rust/driver/fence.rs rust/driver/file.rs rust/driver/import.rs rust/driver/job.rs rust/driver/pool.rs rust/uapi/src/abi.rs')}"

S = "${DMAPINGPONG_UNPACK}/rust/driver"

EXTRA_OEMAKE += "KDIR=${STAGING_KERNEL_DIR}"

RPROVIDES:${PN} += "kernel-module-dmapingpong"

KERNEL_MODULE_AUTOLOAD += "dmapingpong"

CVE_PRODUCT = "dmapingpong"
