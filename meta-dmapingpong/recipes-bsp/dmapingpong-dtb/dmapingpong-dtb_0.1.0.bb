# nooelint: oelint.var.mandatoryvar.HOMEPAGE, oelint.var.suggestedvar.BUGTRACKER, oelint.var.bbclassextend
# (The project has no public home page or bug tracker yet; a device tree is
# machine specific.)
SUMMARY = "QEMU virt device tree with the dmapingpong overlay (qemuarm64)"
DESCRIPTION = "QEMU generates the device tree of its virt machine at run \
               time. This recipe dumps it for the CPUs runqemu starts, \
               applies dts/qemu-virt.dtso (reserved CMA pool and exporter \
               node) and deploys dmapingpong-qemuarm64.dtb, which the image \
               hands to runqemu with QB_DTB."
SECTION = "bsp"
LICENSE = "GPL-2.0-only | MIT"
LIC_FILES_CHKSUM = "file://dts/qemu-virt.dtso;beginline=1;endline=1;md5=68e3a474299667b744905bbc194f61c3"

inherit deploy nopackages dmapingpong

DEPENDS += "dtc-native qemu-system-native"

COMPATIBLE_MACHINE = "^qemuarm64$"

# Sources (dmapingpong_source.bbclass): the dmapingpong git repository, or
# the checkout that holds the layer.
# nooelint: oelint.vars.fileextrapaths, oelint.vars.outofcontext
FILESEXTRAPATHS:prepend := "${@dmapingpong_filesextrapaths(d, '.')}"
SRC_URI = "${@dmapingpong_src_uri(d, 'dts/qemu-virt.dtso')}"

S = "${DMAPINGPONG_UNPACK}"

# The CPUs of the dumped tree must be the ones runqemu starts (TCG, the
# machine's QB_CPU and QB_SMP); QEMU rewrites the memory node itself for the
# -m that runqemu passes.
DMAPINGPONG_QEMU_ARGS = "${QB_MACHINE} ${QB_CPU} ${QB_SMP} -m 512"
DMAPINGPONG_QEMU_DTB = "dmapingpong-qemuarm64.dtb"

CVE_PRODUCT = "dmapingpong"

do_configure[noexec] = "1"

do_compile() {
    qemu-system-aarch64 ${DMAPINGPONG_QEMU_ARGS} -nographic -nodefaults \
        -machine dumpdtb=${B}/virt.dtb
    # The per-run random seeds of the dumped tree would make every build
    # differ.
    fdtput -d ${B}/virt.dtb /chosen kaslr-seed 2>/dev/null || true
    fdtput -d ${B}/virt.dtb /chosen rng-seed 2>/dev/null || true
    dtc -q -@ -I dts -O dtb -o ${B}/dmapingpong.dtbo ${S}/dts/qemu-virt.dtso
    fdtoverlay -i ${B}/virt.dtb -o ${B}/${DMAPINGPONG_QEMU_DTB} ${B}/dmapingpong.dtbo
}

do_deploy() {
    install -m 0644 ${B}/${DMAPINGPONG_QEMU_DTB} ${DEPLOYDIR}/${DMAPINGPONG_QEMU_DTB}
    install -m 0644 ${B}/dmapingpong.dtbo ${DEPLOYDIR}/dmapingpong-qemuarm64.dtbo
}

addtask deploy after do_compile before do_build
