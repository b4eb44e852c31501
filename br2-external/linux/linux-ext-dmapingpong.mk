################################################################################
#
# dmapingpong kernel extensions
#
################################################################################

# The project's kernel tarball is Debian's upstream tarball of Linux
# (linux_<version>.orig.tar.xz, not byte-identical to kernel.org's), taken
# from the Debian archive of the build host's apt configuration
# (scripts/lib.sh: dpp_apt_uri), so that no mirror is written into the
# configuration. Set DMAPINGPONG_DEBIAN_ARCHIVE on a host without one, or
# put the tarball into BR2_DL_DIR/linux/.
DMAPINGPONG_DEBIAN_ARCHIVE ?= $(shell bash -c '. $(BR2_EXTERNAL_DMAPINGPONG_PATH)/../scripts/lib.sh && dpp_apt_uri main' 2>/dev/null)

ifeq ($(BR2_LINUX_KERNEL_EXT_DMAPINGPONG_RUST),y)
# check-package disable TypoInPackageVariable
LINUX_MAKE_FLAGS += LLVM=1

# The kernel drops CONFIG_RUST silently when the host cannot build Rust:
# say why, and stop, before anything is built without it.
define DMAPINGPONG_LINUX_CHECK_RUST
	@if ! $(LINUX_MAKE_ENV) $(BR2_MAKE) $(LINUX_MAKE_FLAGS) -C $(@D) -s rustavailable; then \
		echo "dmapingpong: the kernel cannot build Rust on this host: install rustc, rust-src, bindgen, clang, lld and llvm in the versions of Documentation/rust/quick-start.rst" >&2; \
		exit 1; \
	fi
	@if ! grep -qx 'CONFIG_RUST=y' $(@D)/.config; then \
		echo "dmapingpong: CONFIG_RUST=y did not survive the kernel configuration (see its dependencies: MODVERSIONS, RANDSTRUCT, DEBUG_INFO_BTF)" >&2; \
		exit 1; \
	fi
endef
# check-package disable TypoInPackageVariable
LINUX_PRE_CONFIGURE_HOOKS += DMAPINGPONG_LINUX_CHECK_RUST
endif
