# Sources of the dmapingpong recipes and kernel appends: functions only
# (the variables are conf/layer.conf's; dmapingpong.bbclass, for the
# layer's own recipes, adds the distro feature check and the git-mode skip).
#
# Nothing of the driver, the kernel patch series, the config fragments, the
# device tree overlays, the cargo workspace or the init files is copied into
# the layer: they exist once, in the dmapingpong repository, and the recipes
# take them from one of two places (DMAPINGPONG_SOURCE):
#
#   "git" (the default): the dmapingpong git repository DMAPINGPONG_GIT_URI
#       at the pinned commit DMAPINGPONG_SRCREV, for a BSP that adds the
#       layer without a dmapingpong checkout. The project has no public git
#       host yet: set DMAPINGPONG_GIT_URI (a bitbake git URI without its
#       branch, e.g. "git://git.example.com/dmapingpong.git;protocol=https")
#       to where you keep it, DMAPINGPONG_GIT_BRANCH and DMAPINGPONG_SRCREV
#       to the release you ship. Unset, the recipes are skipped with that
#       reason, and so is the kernel the layer's append is for.
#   "local": the checkout that contains this layer (DMAPINGPONG_TOP,
#       conf/layer.conf), for development; the kas files set it.
#
# Either way the recipes see the repository's layout below
# ${DMAPINGPONG_UNPACK}: ${DMAPINGPONG_UNPACK}/rust/Cargo.toml and so on.
# The kernel recipes never get the repository top as a FILESPATH root: in
# local mode they search rust/linux-patches/ and configs/kernel/ only, in git
# mode they take the series as kernel metadata (configs/kernel/*.scc, a
# "type=kmeta" SRC_URI entry).

def dmapingpong_mode(d):
    mode = d.getVar('DMAPINGPONG_SOURCE')
    if mode not in ('git', 'local'):
        bb.fatal('dmapingpong: DMAPINGPONG_SOURCE is "%s"; it must be "git" or "local"' % mode)
    return mode

def dmapingpong_git_unset(d):
    if dmapingpong_mode(d) == 'git' and not (d.getVar('DMAPINGPONG_GIT_URI') and d.getVar('DMAPINGPONG_SRCREV')):
        return ('dmapingpong: DMAPINGPONG_SOURCE is "git" but DMAPINGPONG_GIT_URI or DMAPINGPONG_SRCREV is not set '
                '(see dmapingpong_source.bbclass); or set DMAPINGPONG_SOURCE = "local"')
    return None

def dmapingpong_local_top(d):
    top = d.getVar('DMAPINGPONG_TOP')
    if not os.path.isfile(os.path.join(top, 'rust', 'Cargo.toml')):
        bb.fatal('dmapingpong: DMAPINGPONG_SOURCE is "local" but %s is no dmapingpong checkout; set DMAPINGPONG_TOP' % top)
    return top
# Where the checkout lies is no input of a task (the file:// checksums cover
# what is fetched from it): keep it out of the signatures, so that sstate is
# shared between checkouts.
# nooelint: oelint.vars.mispell.unknown
dmapingpong_local_top[vardepsexclude] = "DMAPINGPONG_TOP"

# FILESEXTRAPATHS entries for local mode: the given directories of the
# repository, or nothing in git mode.
def dmapingpong_filesextrapaths(d, dirs):
    if dmapingpong_mode(d) != 'local':
        return ''
    top = dmapingpong_local_top(d)
    return ''.join('%s:' % os.path.normpath(os.path.join(top, x)) for x in dirs.split())

# SRC_URI entries for files of the repository (paths relative to its top,
# unpacked below DMAPINGPONG_UNPACK): in git mode the repository itself,
# name "dmapingpong" (SRCREV_dmapingpong); nothing in git mode without a
# repository (the recipe is skipped, dmapingpong.bbclass).
def dmapingpong_src_uri(d, paths):
    if dmapingpong_git_unset(d):
        return ''
    if dmapingpong_mode(d) == 'git':
        return '%s;branch=%s;name=dmapingpong;destsuffix=dmapingpong' % (
            d.getVar('DMAPINGPONG_GIT_URI'), d.getVar('DMAPINGPONG_GIT_BRANCH'))
    return ' '.join('file://%s;subdir=dmapingpong' % p for p in paths.split())

# The cargo workspace, for dmapingpong_src_uri: rust/Cargo.toml,
# rust/Cargo.lock and every member directory named in rust/Cargo.toml (a
# parse dependency in local mode; nothing in git mode, where the repository
# is fetched whole).
def dmapingpong_workspace(d):
    import re
    if dmapingpong_mode(d) == 'git':
        return ''
    manifest = os.path.join(dmapingpong_local_top(d), 'rust', 'Cargo.toml')
    bb.parse.mark_dependency(d, manifest)
    with open(manifest) as f:
        m = re.search(r'^members\s*=\s*\[([^\]]*)\]', f.read(), re.M)
    if not m:
        bb.fatal("dmapingpong: no workspace members in %s" % manifest)
    members = re.findall(r'"([^"]+)"', m.group(1))
    return ' '.join(['rust/Cargo.toml', 'rust/Cargo.lock'] + ['rust/' + x for x in members])

# The kernel side: the patch series and the config fragments FRAGMENTS
# (names in configs/kernel/). Local mode: file:// entries, the patches in the
# order of rust/linux-patches/series (a parse dependency). Git mode: the
# repository as kernel metadata; its configs/kernel/<fragment>.scc files
# carry the same series and fragments (dmapingpong-layer.py check keeps them
# in step) and are named in KERNEL_FEATURES (dmapingpong_kernel_features).
def dmapingpong_kernel_src_uri(d, fragments):
    if dmapingpong_git_unset(d):
        return ''
    if dmapingpong_mode(d) == 'git':
        if 'dmapingpong.cfg' not in fragments.split():
            return ''
        return '%s;type=kmeta;branch=%s;name=dmapingpong;destsuffix=dmapingpong-kmeta' % (
            d.getVar('DMAPINGPONG_GIT_URI'), d.getVar('DMAPINGPONG_GIT_BRANCH'))
    series = os.path.join(dmapingpong_local_top(d), 'rust', 'linux-patches', 'series')
    bb.parse.mark_dependency(d, series)
    uris = []
    if 'dmapingpong.cfg' in fragments.split():
        with open(series) as f:
            for line in f:
                line = line.split('#')[0].strip()
                if line:
                    uris.append('file://' + line)
    return ' '.join(uris + ['file://' + x for x in fragments.split()])

def dmapingpong_kernel_features(d, fragments):
    if dmapingpong_mode(d) != 'git':
        return ''
    return ' '.join('configs/kernel/%s.scc' % os.path.splitext(x)[0] for x in fragments.split())
