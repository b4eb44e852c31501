# Sources of the dmapingpong recipes and appends.
#
# Nothing of the driver, the kernel patch series, the config fragment, the
# device tree overlays, the cargo workspace or the init files is copied into
# the layer: the recipes fetch them from the dmapingpong repository that
# contains the layer, DMAPINGPONG_TOP (conf/layer.conf). Each user adds
#   FILESEXTRAPATHS:prepend := "${DMAPINGPONG_TOP}:"
# so that a file:// entry names a file by its path in that repository, for
# example file://configs/kernel/dmapingpong.cfg, and do_unpack puts it at the
# same path below UNPACKDIR. The layer's own files (files/ next to a recipe)
# are found as usual.

# SRC_URI entries of the kernel patch series, in the order of
# rust/linux-patches/series. The series file is a parse dependency, so the
# recipes are reparsed when it changes.
def dmapingpong_kernel_patches(d):
    import os
    series = os.path.join(d.getVar('DMAPINGPONG_TOP'), 'rust', 'linux-patches', 'series')
    if not os.path.isfile(series):
        bb.fatal("dmapingpong: %s not found; set DMAPINGPONG_TOP to the dmapingpong repository" % series)
    bb.parse.mark_dependency(d, series)
    patches = []
    with open(series) as f:
        for line in f:
            line = line.split('#')[0].strip()
            if line:
                patches.append('file://rust/linux-patches/' + line)
    return ' '.join(patches)

# SRC_URI entries of the cargo workspace: rust/Cargo.toml, rust/Cargo.lock and
# every member directory named in rust/Cargo.toml (a parse dependency too).
def dmapingpong_workspace(d):
    import os, re
    manifest = os.path.join(d.getVar('DMAPINGPONG_TOP'), 'rust', 'Cargo.toml')
    bb.parse.mark_dependency(d, manifest)
    with open(manifest) as f:
        m = re.search(r'^members\s*=\s*\[([^\]]*)\]', f.read(), re.M)
    if not m:
        bb.fatal("dmapingpong: no workspace members in %s" % manifest)
    members = re.findall(r'"([^"]+)"', m.group(1))
    return ' '.join(['file://rust/Cargo.toml', 'file://rust/Cargo.lock'] +
                    ['file://rust/' + x for x in members])
