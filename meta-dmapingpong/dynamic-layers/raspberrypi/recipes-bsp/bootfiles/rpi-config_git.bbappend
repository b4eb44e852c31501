# config.txt: apply the dmapingpong overlay at boot, only with
# DISTRO_FEATURES "dmapingpong".
require ${@bb.utils.contains('DISTRO_FEATURES', 'dmapingpong', 'dmapingpong-rpi-config.inc', '', d)}
