# shellcheck shell=bash
# Common helpers of the dmapingpong scripts. Source it; do not run it.
#
# Caches live outside the checkout, under $DMAPINGPONG_CACHE (default
# ${XDG_CACHE_HOME:-~/.cache}/dmapingpong), each keyed by the sha256 of what it
# is made from, so that any of them can be deleted and is rebuilt from nothing.

set -euo pipefail

DPP_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DPP_CACHE=${DMAPINGPONG_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/dmapingpong}
DPP_JOBS=${DPP_JOBS:-$(nproc)}

# Pinned kernel source (issue: Linux 6.18 LTS from Debian's archive).
DPP_KVER=6.18.15
DPP_KTARBALL=linux_${DPP_KVER}.orig.tar.xz
DPP_KSHA256=fdf4c4d487c95b17a41cb38003faef86669e532a44fe702eb31a3390b6a60cca

# The KUnit suites the debug kernel runs at boot (configs/kernel/debug.cfg):
# the series' and the kernel crate's doctests; scripts/run-qemu and the lab
# tests (scripts/lab-test) check that each ran.
DPP_KUNIT_SUITES="rust_doctests_kernel rust_dma_fence rust_sync_file rust_dma_resv rust_dma_buf rust_dma_shared rust_dmaengine rust_miscdevice"

# Paths as seen inside the build chroot (see dpp_in_chroot).
DPP_CH_SRC=/src
DPP_CH_CACHE=/cache
# The build chroot's unprivileged user (scripts/build-chroot), for bitbake.
DPP_CH_USER=builder
DPP_CH_UID=1000

dpp_log() { printf '[dmapingpong] %s\n' "$*" >&2; }
dpp_die() { printf '[dmapingpong] error: %s\n' "$*" >&2; exit 1; }

dpp_require_root() {
	[ "$(id -u)" = 0 ] && return 0
	command -v sudo >/dev/null || dpp_die "the build chroot needs root (mmdebstrap + chroot); run as root"
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
# machine boots the same kernel (virt.cfg + versal.cfg + interop.cfg): the
# same fragments, so the same hash and build directory, built once. rpi4 (merged onto the
# arm64 defconfig) is only configured, by scripts/test. One path per line,
# below TOP (the checkout, or $DPP_CH_SRC inside the build chroot); fails for
# an unknown machine.
dpp_kernel_fragments() { # top machine debug
	local top=$1 name names
	case $2 in
	virt | versal) names=(dmapingpong virt versal interop) ;;
	rpi4) names=(dmapingpong rpi4) ;;
	*) return 1 ;;
	esac
	[ "$3" = 0 ] || names+=(debug)
	for name in "${names[@]}"; do
		printf '%s\n' "$top/configs/kernel/$name.cfg"
	done
}

# The patch names of a quilt-style series file (rust/linux-patches/series),
# in order: comments and blank lines dropped.
dpp_series_patches() { # series-file
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$1"
}

# Whether every option of the fragments, and every "# CONFIG_X is not set"
# line, is in the .config (after olddefconfig, which drops an unknown symbol
# or one with unmet dependencies).
dpp_config_check() { # .config fragment...
	local config=$1 line missing=0
	shift
	while read -r line; do
		case $line in CONFIG_*=n) line="# ${line%=n} is not set" ;; esac
		grep -qxF "$line" "$config" || { dpp_log "config: '$line' did not survive olddefconfig"; missing=1; }
	done < <(cat "$@" | sed -E -e '/^# CONFIG_[A-Za-z0-9_]+ is not set$/b' -e 's/#.*//' -e '/^[[:space:]]*$/d')
	return "$missing"
}

dpp_chroot_dir() {
	echo "$DPP_CACHE/chroot-$(dpp_hash "$DPP_TOP/configs/build-chroot-packages.txt" "$DPP_TOP/scripts/build-chroot")"
}

# Run a command inside the build chroot, in a private mount namespace so that
# concurrent runs do not see each other's mounts and nothing is left mounted.
# The checkout is at $DPP_CH_SRC and the cache at $DPP_CH_CACHE inside.
dpp_in_chroot() {
	local br
	br=$(dpp_chroot_dir)
	[ -d "$br" ] || dpp_die "no build chroot at $br (run scripts/build-chroot)"
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
	' dpp "$br" "$DPP_TOP" "$DPP_CACHE" "$DPP_CH_SRC" "$DPP_CH_CACHE" "$@"
}

# The git tree id of a directory's contents, as "git add -f -A && git
# write-tree" gives it (a .git inside is not part of it): the same whether
# the directory is a clone of a commit or "git archive" of that commit.
dpp_tree_id() { # dir
	local g rc=0
	g=$(mktemp -d)
	git --git-dir="$g" init -q &&
		git --git-dir="$g" --work-tree="$1" add -f -A &&
		git --git-dir="$g" write-tree || rc=$?
	rm -rf "$g"
	return "$rc"
}

# A pinned upstream tree, verified by its git tree id before use, and kept
# in $DPP_CACHE/upstream/NAME-<tree12> (keyed by the id). Taken from the
# download cache ($DPP_CACHE/downloads/TARBALL: "git archive" of the pinned
# commit with one top directory, as ../shared/downloads holds them for CI),
# else cloned (git clone --depth 1 --branch REF URL; with COMMIT, that commit
# of branch REF). Prints the directory. Returns 2 when neither source can be
# had (no tarball, no network); dies when a source holds another tree.
dpp_upstream_tree() { # name tree tarball url ref [commit]
	local name=$1 tree=$2 tarball=$DPP_CACHE/downloads/$3 url=$4 ref=$5 commit=${6:-} dir tmp got
	dir=$DPP_CACHE/upstream/$name-${tree:0:12}
	if [ "$(cat "$dir/.dpp-tree-id" 2>/dev/null)" = "$tree" ]; then
		echo "$dir"
		return 0
	fi
	tmp=$dir.tmp
	rm -rf "$tmp" && mkdir -p "$tmp"
	if [ -f "$tarball" ]; then
		dpp_log "$name: unpacking $tarball"
		tar -xJf "$tarball" -C "$tmp" --strip-components=1 || dpp_die "$name: cannot unpack $tarball"
	elif [ -z "$commit" ] && GIT_TERMINAL_PROMPT=0 git clone -q --depth 1 --branch "$ref" "$url" "$tmp" 2>/dev/null; then
		dpp_log "$name: cloned $ref of $url"
		rm -rf "$tmp/.git"
	elif [ -n "$commit" ] && { git -C "$tmp" init -q && GIT_TERMINAL_PROMPT=0 git -C "$tmp" fetch -q --depth 1 "$url" "$commit" ||
		{ rm -rf "$tmp" && GIT_TERMINAL_PROMPT=0 git clone -q --single-branch --branch "$ref" "$url" "$tmp"; }; } 2>/dev/null &&
		git -C "$tmp" -c advice.detachedHead=false checkout -q "$commit" 2>/dev/null; then
		dpp_log "$name: cloned $commit ($ref) of $url"
		rm -rf "$tmp/.git"
	else
		rm -rf "$tmp"
		dpp_log "$name: no $tarball, and $url cannot be cloned"
		return 2
	fi
	got=$(dpp_tree_id "$tmp") || dpp_die "$name: cannot compute the tree id of $tmp"
	if [ "$got" != "$tree" ]; then
		rm -rf "$tmp"
		dpp_die "$name: the source has tree $got, not the pinned $tree (removed)"
	fi
	echo "$tree" >"$tmp/.dpp-tree-id"
	rm -rf "$dir"
	mv "$tmp" "$dir"
	echo "$dir"
}

# The Python tools of the layer checks (kas, oelint-adv) in a venv under the
# cache, keyed by their pins; made on first use. Prints its directory.
DPP_LAYER_PINS=(kas==5.5 oelint-adv==9.11.2 oelint-parser==8.13.2 oelint-data==1.5.26 jsonschema==4.26.0)
dpp_layer_venv() {
	local venv
	venv=$DPP_CACHE/layer-venv-$(printf '%s\n' "${DPP_LAYER_PINS[@]}" | sha256sum | cut -c1-16)
	if [ ! -x "$venv/bin/oelint-adv" ] || [ ! -x "$venv/bin/kas" ]; then
		dpp_log "creating $venv (${DPP_LAYER_PINS[*]})"
		rm -rf "$venv"
		if ! python3 -m venv "$venv" 2>/dev/null; then
			# Debian's system python needs python3-venv for ensurepip.
			dpp_log "installing python3-venv on the host"
			rm -rf "$venv"
			apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
			python3 -m venv "$venv"
		fi
		"$venv/bin/pip" install -q --disable-pip-version-check "${DPP_LAYER_PINS[@]}" >&2
	fi
	echo "$venv"
}

# The virtual environment of the lab tests (labgrid, pytest, voluptuous:
# scripts/lab/requirements.txt, hashes checked), under the cache and keyed
# by that file; made on first use. Inside the build chroot (its path there
# is printed), or with "host" with this machine's Python 3 (a lab host:
# scripts/lab-test --env).
dpp_lab_venv() { # [host]
	local key make venv
	key=$(dpp_hash "$DPP_TOP/scripts/lab/requirements.txt")
	# shellcheck disable=SC2016 # expanded by the shell that runs it
	make='[ -e "$VENV/.complete" ] && exit 0
		rm -rf "$VENV"
		python3 -m venv "$VENV"
		"$VENV/bin/pip" install -q --disable-pip-version-check --require-hashes -r "$REQ"
		touch "$VENV/.complete"'
	if [ "${1:-}" = host ]; then
		venv=$DPP_CACHE/lab-venv-host-$key
		VENV=$venv REQ=$DPP_TOP/scripts/lab/requirements.txt bash -euc "$make" >&2
	else
		venv=$DPP_CH_CACHE/lab-venv-$key
		dpp_in_chroot env VENV="$venv" REQ="$DPP_CH_SRC/scripts/lab/requirements.txt" \
			PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt bash -euc "$make" >&2
	fi
	echo "$venv"
}
