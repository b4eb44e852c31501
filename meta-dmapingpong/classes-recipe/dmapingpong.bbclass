# The layer's recipes that build from the dmapingpong sources (the module,
# the user space, the device trees): the sources (dmapingpong_source.bbclass)
# and the conditions to build at all. Without the "dmapingpong" distro
# feature (which also puts Rust and the patch series into the kernel) they
# are skipped for it (features_check), and in git mode without a repository
# to fetch they are skipped with that reason.
inherit features_check dmapingpong_source

REQUIRED_DISTRO_FEATURES += "dmapingpong"

# (Only anonymous python can skip a recipe.)
# nooelint: oelint.task.noanonpython
python __anonymous() {
    reason = dmapingpong_git_unset(d)
    if reason:
        raise bb.parse.SkipRecipe(reason)
}
