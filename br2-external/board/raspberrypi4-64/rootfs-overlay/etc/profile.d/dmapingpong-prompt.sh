# shellcheck shell=sh
# The login shell's prompt "root@<host>:<dir># ", which the lab environment
# configs/labgrid/rpi4.yaml waits for (Buildroot's own is "# ", which a KTAP
# diagnostic line on the console would match too).
[ -z "$PS1" ] || PS1='\u@\h:\w# '
