# dmapingpong kernel changes (Rust, the patch series, dmapingpong.cfg), only
# with DISTRO_FEATURES "dmapingpong": the layer changes nothing otherwise.
require ${@bb.utils.contains('DISTRO_FEATURES', 'dmapingpong', 'dmapingpong-kernel.inc', '', d)}
