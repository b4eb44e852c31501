# shellcheck shell=bash
# Common helpers of the dmapingpong scripts. Source it; do not run it.
#
# Caches live outside the checkout, under $DMAPINGPONG_CACHE (default
# ${XDG_CACHE_HOME:-~/.cache}/dmapingpong), each keyed by the sha256 of what it
# is made from, so that any of them can be deleted and is rebuilt from nothing.

set -euo pipefail

DPP_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DPP_CACHE=${DMAPINGPONG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dmapingpong}
DPP_JOBS=${DPP_JOBS:-$(nproc)}

# Pinned kernel source (issue: Linux 6.18 LTS from Debian's archive).
DPP_KVER=6.18.15
DPP_KTARBALL=linux_${DPP_KVER}.orig.tar.xz
DPP_KSHA256=fdf4c4d487c95b17a41cb38003faef86669e532a44fe702eb31a3390b6a60cca

# Paths as seen inside the build root (see dpp_in_buildroot).
DPP_BR_SRC=/src
DPP_BR_CACHE=/cache

dpp_log() { printf '[dmapingpong] %s\n' "$*" >&2; }
dpp_die() { printf '[dmapingpong] error: %s\n' "$*" >&2; exit 1; }

dpp_require_root() {
	[ "$(id -u)" = 0 ] && return 0
	command -v sudo >/dev/null || dpp_die "the build root needs root (mmdebstrap + chroot); run as root"
	exec sudo -E "$0" "$@"
}

# sha256 of the given files' contents (names included), short form.
dpp_hash() {
	local f
	for f in "$@"; do
		printf '%s\n' "${f#"$DPP_TOP"/}"
		cat "$f"
	done | sha256sum | cut -c1-16
}

# Run "$@" as a named stage and print how long it took.
dpp_stage() {
	local name=$1 start rc=0
	shift
	start=$(date +%s)
	dpp_log "stage $name ..."
	"$@" || rc=$?
	dpp_log "stage $name: $(($(date +%s) - start)) s (exit $rc)"
	return "$rc"
}

# The Debian archive and security archive URIs of this machine's apt
# configuration (deb822 .sources and one-line .list files). Never hard-coded.
dpp_apt_uri() { # main|security
	local want=$1
	local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
	{ cat "${files[@]}" 2>/dev/null || true; } | awk -v want="$want" '
		function emit(u, s) {
			if (u == "" || found) return
			sec = (s ~ /-security/ || u ~ /-security/)
			if ((want == "security") == sec) { print u; found = 1 }
		}
		/^[[:space:]]*#/ { next }
		/^deb(-src)?[[:space:]]/ {
			n = split($0, f, /[[:space:]]+/); i = 2
			if (f[i] ~ /^\[/) { while (i <= n && f[i] !~ /\]$/) i++; i++ }
			emit(f[i], f[i + 1]); next
		}
		/^URIs:/ { uri = $2 }
		/^Suites:/ { suites = $0 }
		/^[[:space:]]*$/ { if (uri != "") emit(uri, suites); uri = ""; suites = "" }
		END { emit(uri, suites) }
	' | sed 's#/*$##'
}

# Remove a cache directory without ever crossing into something mounted below
# it (an interrupted mmdebstrap can leave /proc, /sys or /dev mounted there).
dpp_rm_tree() {
	local d=$1 m
	[ -e "$d" ] || return 0
	for m in $(awk -v d="$(realpath "$d")/" 'index($2 "/", d) == 1 { print $2 }' /proc/mounts | sort -r); do
		umount -l "$m" || dpp_die "cannot unmount $m"
	done
	rm -rf --one-file-system "$d"
}

# The driver's sources; its build directory is keyed by them, so that a
# build never reuses objects of other sources at the same path.
dpp_driver_key() {
	dpp_hash "$DPP_TOP"/rust/driver/Kbuild "$DPP_TOP"/rust/driver/*.rs "$DPP_TOP"/rust/uapi/src/abi.rs
}

# The kernel config fragments of a machine, in merge order: dmapingpong.cfg,
# the machine's, then debug.cfg for the debug kernel (debug = 1). Every QEMU
# machine boots the same kernel (virt.cfg + versal.cfg): the same fragments,
# so the same hash and build directory, built once. rpi4 (merged onto the
# arm64 defconfig) is only configured, by scripts/test. One path per line,
# below TOP (the checkout, or $DPP_BR_SRC inside the build root); fails for
# an unknown machine.
dpp_kernel_fragments() { # top machine debug
	local top=$1 name names
	case $2 in
	virt | versal) names=(dmapingpong virt versal) ;;
	rpi4) names=(dmapingpong rpi4) ;;
	*) return 1 ;;
	esac
	[ "$3" = 0 ] || names+=(debug)
	for name in "${names[@]}"; do
		printf '%s\n' "$top/configs/kernel/$name.cfg"
	done
}

# Whether every option of the fragments is in the .config (after
# olddefconfig, which drops an unknown symbol or one with unmet dependencies).
dpp_config_check() { # .config fragment...
	local config=$1 line missing=0
	shift
	while read -r line; do
		case $line in CONFIG_*=n) line="# ${line%=n} is not set" ;; esac
		grep -qxF "$line" "$config" || { dpp_log "config: '$line' did not survive olddefconfig"; missing=1; }
	done < <(cat "$@" | sed -e 's/#.*//' -e '/^[[:space:]]*$/d')
	return "$missing"
}

dpp_buildroot_dir() {
	echo "$DPP_CACHE/buildroot-$(dpp_hash "$DPP_TOP/configs/buildroot-packages.txt" "$DPP_TOP/scripts/buildroot")"
}

# Run a command inside the build root, in a private mount namespace so that
# concurrent runs do not see each other's mounts and nothing is left mounted.
# The checkout is at $DPP_BR_SRC and the cache at $DPP_BR_CACHE inside.
dpp_in_buildroot() {
	local br
	br=$(dpp_buildroot_dir)
	[ -d "$br" ] || dpp_die "no build root at $br (run scripts/buildroot)"
	mkdir -p "$DPP_CACHE"
	cp -L /etc/resolv.conf "$br/etc/resolv.conf" 2>/dev/null || true
	# Trust what this machine trusts (a site proxy's CA, say) for HTTPS from inside.
	local ca=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
	cp -L "$ca" "$br/etc/ssl/certs/host-ca-certificates.crt" 2>/dev/null ||
		cp "$br/etc/ssl/certs/ca-certificates.crt" "$br/etc/ssl/certs/host-ca-certificates.crt"
	unshare --mount --propagation private -- bash -euc '
		br=$1 top=$2 cache=$3 src=$4 cdir=$5; shift 5
		mount -t proc proc "$br/proc"
		mount --rbind /sys "$br/sys"
		mount --rbind /dev "$br/dev"
		mount -t tmpfs tmpfs "$br/tmp"
		mkdir -p "$br$src" "$br$cdir"
		mount --bind "$top" "$br$src"
		mount --bind "$cache" "$br$cdir"
		exec chroot "$br" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" \
			PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin LANG=C.UTF-8 \
			SSL_CERT_FILE=/etc/ssl/certs/host-ca-certificates.crt \
			CARGO_HTTP_CAINFO=/etc/ssl/certs/host-ca-certificates.crt \
			CARGO_HOME="$cdir/cargo-home" CARGO_TARGET_DIR="$cdir/cargo-target" CI="${CI:-}" RUST_LOG="${RUST_LOG:-}" \
			"$@"
	' dpp "$br" "$DPP_TOP" "$DPP_CACHE" "$DPP_BR_SRC" "$DPP_BR_CACHE" "$@"
}
