# nooelint: oelint.var.mandatoryvar.HOMEPAGE, oelint.var.suggestedvar.BUGTRACKER, oelint.var.bbclassextend
# (The project has no public home page or bug tracker yet; the tools talk to
# the target's /dev/dmapingpong, no native or SDK use.)
SUMMARY = "dmapingpong user space: the dmapingpong tool and the boot-time self-test"
DESCRIPTION = "The cargo workspace of the dmapingpong repository: the \
               dmapingpong command (device info, by-hand ping/pong runs) and \
               dmapingpong-selftest, the init-time KTAP self-test of the \
               driver, run once at boot by a systemd unit or a SysV init \
               script."
SECTION = "devel"
LICENSE = "GPL-2.0-only | MIT"
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=9;endline=9;md5=e54730d9e9d5b19e8795c47ee2b7a53c"

inherit cargo cargo-update-recipe-crates ptest-cargo update-rc.d systemd dmapingpong_source

# Sources by their path in the repository (dmapingpong_source.bbclass).
# nooelint: oelint.vars.fileextrapaths, oelint.vars.outofcontext
FILESEXTRAPATHS:prepend := "${DMAPINGPONG_TOP}:"

# crate:// entries and checksums of rust/Cargo.lock: regenerate with
# "bitbake -c update_crates dmapingpong" or
# meta-dmapingpong/scripts/dmapingpong-layer.py crates --write
require ${BPN}-crates.inc

# From the repository (dmapingpong_source.bbclass): the cargo workspace
# (rust/Cargo.toml, rust/Cargo.lock and the members rust/Cargo.toml names,
# dmapingpong_workspace), the default configuration and the init files.
# run-ptest is the layer's own (files/).
SRC_URI += "${@dmapingpong_workspace(d)} \
            file://configs/selftest.toml \
            file://configs/init/dmapingpong-selftest.init \
            file://configs/init/dmapingpong-selftest.service \
            file://run-ptest \
            "

S = "${UNPACKDIR}/rust"

# The uapi crate's C header test compiles a C program: there is no compiler
# on the target; it runs on the build host (scripts/test).
RUST_TEST_ARGS = "--skip c_header_matches_rust"

CVE_PRODUCT = "dmapingpong"

do_install:append() {
    install -d ${D}${sysconfdir}/dmapingpong
    install -m 0644 ${UNPACKDIR}/configs/selftest.toml ${D}${sysconfdir}/dmapingpong/selftest.toml
    if ${@bb.utils.contains('DISTRO_FEATURES', 'sysvinit', 'true', 'false', d)}; then
        install -d ${D}${sysconfdir}/init.d
        install -m 0755 ${UNPACKDIR}/configs/init/dmapingpong-selftest.init ${D}${sysconfdir}/init.d/dmapingpong-selftest
    fi
    if ${@bb.utils.contains('DISTRO_FEATURES', 'systemd', 'true', 'false', d)}; then
        install -d ${D}${systemd_system_unitdir}
        install -m 0644 ${UNPACKDIR}/configs/init/dmapingpong-selftest.service ${D}${systemd_system_unitdir}/dmapingpong-selftest.service
    fi
}

PACKAGE_BEFORE_PN = "${PN}-selftest"

FILES:${PN}-selftest += "${bindir}/dmapingpong-selftest \
                         ${sysconfdir}/dmapingpong \
                         ${sysconfdir}/init.d/dmapingpong-selftest \
                         ${systemd_system_unitdir}/dmapingpong-selftest.service \
                         "
CONFFILES:${PN}-selftest = "${sysconfdir}/dmapingpong/selftest.toml"
# The self-test reloads the module (rmmod/modprobe).
RDEPENDS:${PN}-selftest = "kernel-module-dmapingpong kmod"
RDEPENDS:${PN}-ptest += "${PN}-selftest"

INITSCRIPT_PACKAGES = "${PN}-selftest"
INITSCRIPT_NAME:${PN}-selftest = "dmapingpong-selftest"
INITSCRIPT_PARAMS:${PN}-selftest = "start 99 S ."

SYSTEMD_PACKAGES = "${PN}-selftest"
SYSTEMD_SERVICE:${PN}-selftest = "dmapingpong-selftest.service"
