# dmapingpong on the Raspberry Pi kernel, only with DISTRO_FEATURES
# "dmapingpong": Rust, the patch series, dmapingpong.cfg, rpi4.cfg (the DMA
# engine) and the overlay. (dmapingpong-kernel.inc is the layer's
# recipes-kernel/linux one, found through BBPATH.)
require ${@bb.utils.contains('DISTRO_FEATURES', 'dmapingpong', 'recipes-kernel/linux/dmapingpong-kernel.inc dmapingpong-rpi-kernel.inc dmapingpong-rpi-overlay.inc', '', d)}
