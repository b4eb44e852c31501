################################################################################
#
# dmapingpong-driver
#
################################################################################

# The sources are the dmapingpong repository that holds this br2-external
# tree: nothing is copied into it (rust/driver includes rust/uapi/src/abi.rs,
# the ioctl ABI).
DMAPINGPONG_DRIVER_VERSION = 0.1.0
DMAPINGPONG_DRIVER_SITE = $(BR2_EXTERNAL_DMAPINGPONG_PATH)/..
DMAPINGPONG_DRIVER_SITE_METHOD = local
DMAPINGPONG_DRIVER_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude=/rust/target --exclude=/meta-dmapingpong --exclude=/br2-external
DMAPINGPONG_DRIVER_LICENSE = GPL-2.0
DMAPINGPONG_DRIVER_LICENSE_FILES = LICENSES/GPL-2.0
DMAPINGPONG_DRIVER_MODULE_SUBDIRS = rust/driver

DMAPINGPONG_DRIVER_OVERLAY = $(call qstrip,$(BR2_PACKAGE_DMAPINGPONG_DRIVER_OVERLAY))

ifneq ($(DMAPINGPONG_DRIVER_OVERLAY),)
DMAPINGPONG_DRIVER_DEPENDENCIES += host-dtc
DMAPINGPONG_DRIVER_INSTALL_IMAGES = YES
define DMAPINGPONG_DRIVER_INSTALL_IMAGES_CMDS
	$(HOST_DIR)/bin/dtc -q -@ -I dts -O dtb \
		-o $(BINARIES_DIR)/dmapingpong.dtbo \
		$(@D)/dts/$(DMAPINGPONG_DRIVER_OVERLAY).dtso
endef
endif

$(eval $(kernel-module))
$(eval $(generic-package))
