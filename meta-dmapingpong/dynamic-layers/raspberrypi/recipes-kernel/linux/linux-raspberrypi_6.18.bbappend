# dmapingpong on the Raspberry Pi kernel, only with DISTRO_FEATURES
# "dmapingpong": Rust, the patch series, dmapingpong.cfg and rpi4.cfg (the
# DMA engine, MODVERSIONS off). (dmapingpong-kernel.inc is the layer's
# recipes-kernel/linux one, found through BBPATH.) The overlay is
# dmapingpong-rpi-overlay's, not the kernel's.
require ${@bb.utils.contains('DISTRO_FEATURES', 'dmapingpong', 'recipes-kernel/linux/dmapingpong-kernel.inc dmapingpong-rpi-kernel.inc', '', d)}
