################################################################################
#
# dmapingpong
#
################################################################################

# The cargo workspace rust/ of the dmapingpong repository that holds this
# br2-external tree (nothing is copied into it), with its default self-test
# configuration and init files.
DMAPINGPONG_VERSION = 0.1.0
DMAPINGPONG_SITE = $(BR2_EXTERNAL_DMAPINGPONG_PATH)/..
DMAPINGPONG_SITE_METHOD = local
DMAPINGPONG_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude=/rust/target --exclude=/meta-dmapingpong --exclude=/br2-external
DMAPINGPONG_SUBDIR = rust
DMAPINGPONG_LICENSE = GPL-2.0 or MIT
DMAPINGPONG_LICENSE_FILES = LICENSES/GPL-2.0 LICENSES/MIT

# The cargo infrastructure vendors the crates in its download step, which a
# local package does not have: vendor them from rust/Cargo.lock before the
# build (cargo's cache in BR2_DL_DIR keeps them for offline rebuilds).
define DMAPINGPONG_VENDOR_CRATES
	cd $(@D)/rust && $(PKG_COMMON_CARGO_ENV) \
		$(HOST_DIR)/bin/cargo vendor --locked --versioned-dirs VENDOR \
		> $(@D)/rust/vendor-config.toml
	mkdir -p $(@D)/rust/.cargo
	mv $(@D)/rust/vendor-config.toml $(@D)/rust/.cargo/config.toml
endef
DMAPINGPONG_PRE_CONFIGURE_HOOKS += DMAPINGPONG_VENDOR_CRATES

DMAPINGPONG_BINS = dmapingpong \
	$(if $(BR2_PACKAGE_DMAPINGPONG_SELFTEST),dmapingpong-selftest) \
	$(if $(BR2_PACKAGE_DMAPINGPONG_ROBUSTNESS),dmapingpong-robustness) \
	$(if $(BR2_PACKAGE_DMAPINGPONG_INTEROP),dmapingpong-interop)
DMAPINGPONG_TARGET_BIN_DIR = \
	$(@D)/rust/target/$(RUSTC_TARGET_NAME)/$(if $(BR2_ENABLE_DEBUG),debug,release)

# The workspace is virtual (no package at its root): install what was built.
define DMAPINGPONG_INSTALL_TARGET_CMDS
	$(foreach b,$(DMAPINGPONG_BINS), \
		$(INSTALL) -D -m 0755 $(DMAPINGPONG_TARGET_BIN_DIR)/$(b) \
			$(TARGET_DIR)/usr/bin/$(b)$(sep))
	$(if $(BR2_PACKAGE_DMAPINGPONG_SELFTEST), \
		$(INSTALL) -D -m 0644 $(@D)/configs/selftest.toml \
			$(TARGET_DIR)/etc/dmapingpong/selftest.toml)
endef

ifeq ($(BR2_PACKAGE_DMAPINGPONG_SELFTEST),y)
define DMAPINGPONG_INSTALL_INIT_SYSV
	$(INSTALL) -D -m 0755 $(@D)/configs/init/dmapingpong-selftest.init \
		$(TARGET_DIR)/etc/init.d/S99dmapingpong-selftest
endef

define DMAPINGPONG_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 $(@D)/configs/init/dmapingpong-selftest.service \
		$(TARGET_DIR)/usr/lib/systemd/system/dmapingpong-selftest.service
endef
endif

$(eval $(cargo-package))
