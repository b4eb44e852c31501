# nooelint: oelint.var.mandatoryvar.HOMEPAGE, oelint.var.suggestedvar.BUGTRACKER, oelint.var.bbclassextend
# (The project has no public home page or bug tracker yet; the tools talk to
# the target's /dev/dmapingpong, no native or SDK use.)
SUMMARY = "dmapingpong user space: tool, boot-time self-test, robustness and interop suites"
DESCRIPTION = "The cargo workspace of the dmapingpong repository: the \
               dmapingpong command (device info, by-hand ping/pong runs); \
               dmapingpong-selftest, the init-time KTAP self-test of the \
               driver, run once at boot by a systemd unit or a SysV init \
               script (package dmapingpong-selftest); dmapingpong-robustness, \
               fuzzed ioctls, killed peers and soak runs against the driver \
               (package dmapingpong-robustness); dmapingpong-interop, the \
               exporter with vgem and vivid (package dmapingpong-interop)."
SECTION = "devel"

# LICENSE and LIC_FILES_CHKSUM: the workspace's own and those of every crate
# the binaries link, generated from rust/Cargo.lock (scripts/check-layer
# keeps it in step).
require ${BPN}-licenses.inc

# dmapingpong.bbclass: only with the "dmapingpong" distro feature, which
# also builds the driver (dmapingpong-module) the tools and the self-test
# talk to.
inherit cargo cargo-update-recipe-crates ptest-cargo update-rc.d systemd dmapingpong

# crate:// entries and checksums of rust/Cargo.lock: regenerate with
# "bitbake -c update_crates dmapingpong" or
# meta-dmapingpong/scripts/dmapingpong-layer.py crates --write
require ${BPN}-crates.inc

# Sources (dmapingpong_source.bbclass): the dmapingpong git repository, or
# the checkout that holds the layer: the cargo workspace (rust/Cargo.toml,
# rust/Cargo.lock and the members rust/Cargo.toml names), the licence texts,
# the default configuration and the init files. run-ptest is the layer's
# own (files/).
# nooelint: oelint.vars.fileextrapaths, oelint.vars.outofcontext
FILESEXTRAPATHS:prepend := "${@dmapingpong_filesextrapaths(d, '.')}"
SRC_URI += "${@dmapingpong_src_uri(d, dmapingpong_workspace(d) + ' COPYING LICENSES configs/selftest.toml configs/init')} \
            file://run-ptest \
            "

S = "${DMAPINGPONG_UNPACK}/rust"

# The uapi crate's C header test compiles a C program: there is no compiler
# on the target; it runs on the build host (scripts/test).
RUST_TEST_ARGS = "--skip c_header_matches_rust"

CVE_PRODUCT = "dmapingpong"

do_install:append() {
    install -d ${D}${sysconfdir}/dmapingpong
    install -m 0644 ${DMAPINGPONG_UNPACK}/configs/selftest.toml ${D}${sysconfdir}/dmapingpong/selftest.toml
    if ${@bb.utils.contains('DISTRO_FEATURES', 'sysvinit', 'true', 'false', d)}; then
        install -d ${D}${sysconfdir}/init.d
        install -m 0755 ${DMAPINGPONG_UNPACK}/configs/init/dmapingpong-selftest.init ${D}${sysconfdir}/init.d/dmapingpong-selftest
    fi
    if ${@bb.utils.contains('DISTRO_FEATURES', 'systemd', 'true', 'false', d)}; then
        install -d ${D}${systemd_system_unitdir}
        install -m 0644 ${DMAPINGPONG_UNPACK}/configs/init/dmapingpong-selftest.service ${D}${systemd_system_unitdir}/dmapingpong-selftest.service
    fi
}

# The boot-time self-test, the robustness suite (fuzzed ioctls, killed
# peers, soak; minutes of load: not for every image) and the interop suite
# (needs a kernel with vgem and vivid) in their own packages; ${PN} keeps the
# dmapingpong tool.
PACKAGE_BEFORE_PN = "${PN}-selftest ${PN}-robustness ${PN}-interop"

FILES:${PN}-selftest += "${bindir}/dmapingpong-selftest \
                         ${sysconfdir}/dmapingpong \
                         ${sysconfdir}/init.d/dmapingpong-selftest \
                         ${systemd_system_unitdir}/dmapingpong-selftest.service \
                         "
FILES:${PN}-robustness += "${bindir}/dmapingpong-robustness"
FILES:${PN}-interop += "${bindir}/dmapingpong-interop"

CONFFILES:${PN}-selftest = "${sysconfdir}/dmapingpong/selftest.toml"
# The self-test reloads the module (rmmod/modprobe).
RDEPENDS:${PN}-selftest = "kernel-module-dmapingpong kmod"
RDEPENDS:${PN}-robustness = "kernel-module-dmapingpong"
# It loads vgem and vivid (modprobe), where the kernel has them as modules.
RDEPENDS:${PN}-interop = "kernel-module-dmapingpong kmod"
RDEPENDS:${PN}-ptest += "${PN}-selftest"
RRECOMMENDS:${PN}-interop = "kernel-module-vgem kernel-module-vivid"

INITSCRIPT_PACKAGES = "${PN}-selftest"
INITSCRIPT_NAME:${PN}-selftest = "dmapingpong-selftest"
INITSCRIPT_PARAMS:${PN}-selftest = "start 99 S ."

SYSTEMD_PACKAGES = "${PN}-selftest"
SYSTEMD_SERVICE:${PN}-selftest = "dmapingpong-selftest.service"
