# bash completion for zerofs(1); installed by `make install` as
# $(datadir)/bash-completion/completions/zerofs. Options are read from
# `zerofs COMMAND --help`, so they cannot drift from the program.
# Needs nothing from the bash-completion package.

_zerofs_mounts()
{
	# Mount points of type fuse.zerofs (field 5; "\040" is a space).
	local line
	while read -r line; do
		set -- $line
		while [ $# -gt 0 ] && [ "$1" != "-" ]; do shift; done
		[ "$2" = fuse.zerofs ] || continue
		set -- $line
		printf '%b\n' "$5"
	done </proc/self/mountinfo 2>/dev/null
}

_zerofs()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local commands="mount umount status inspect export verify help"
	local cmd i
	COMPREPLY=()
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		-*) ;;
		*) cmd=${COMP_WORDS[i]}; break ;;
		esac
	done
	if [ -z "$cmd" ]; then
		COMPREPLY=($(compgen -W "$commands --help --version" -- "$cur"))
		return
	fi
	case $prev in
	--dtype) COMPREPLY=($(compgen -W "auto fp32 bf16 fp16" -- "$cur")); return ;;
	--max-shard-size) COMPREPLY=($(compgen -W "5GB 2GB 1GB 500MB 5GiB" -- "$cur")); return ;;
	--tag|--threads|--readahead|--strip-prefix) return ;;
	--config|--base) COMPREPLY=($(compgen -d -- "$cur")); return ;;
	--log) COMPREPLY=($(compgen -f -- "$cur")); return ;;
	-o) COMPREPLY=($(compgen -W "allow_other auto_unmount uid= gid= umask= dtype= tag= max_shard_size= log= all" -- "$cur")); return ;;
	esac
	case $cmd in
	help) COMPREPLY=($(compgen -W "$commands" -- "$cur")); return ;;
	esac
	if [[ $cur == -* ]]; then
		local opts
		opts=$("${COMP_WORDS[0]}" "$cmd" --help 2>/dev/null | grep -o -- '--[a-z][a-z0-9-]*' | sort -u)
		COMPREPLY=($(compgen -W "$opts" -- "$cur"))
		return
	fi
	case $cmd in
	umount|status)
		local IFS=$'\n'
		COMPREPLY=($(compgen -W "$(_zerofs_mounts)" -- "$cur"))
		;;
	inspect)
		# After CKPT come tensor name patterns: offer the tensor names
		# (inspect reads metadata only, so this answers at once).
		local ckpt
		ckpt=$(_zerofs_first_arg "$i")
		if [ -n "$ckpt" ]; then
			local IFS=$'\n'
			COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" inspect "$ckpt" --json 2>/dev/null |
				grep -o '"name":"[^"\\]*","shape"' | sed 's/^"name":"//; s/","shape"$//')" -- "$cur"))
		else
			COMPREPLY=($(compgen -d -- "$cur"))
		fi
		;;
	*)
		COMPREPLY=($(compgen -d -- "$cur"))
		;;
	esac
}

# The first argument after the command word (at index $1) that is neither
# an option nor an option's value; empty when there is none before the
# word being completed.
_zerofs_first_arg()
{
	local j
	for ((j = $1 + 1; j < COMP_CWORD; j++)); do
		case ${COMP_WORDS[j]} in
		--tag|--dtype|--max-shard-size|--strip-prefix|--config|--log|--threads|--readahead|-o|-t)
			((j++)) ;;
		-*) ;;
		*) echo "${COMP_WORDS[j]}"; return ;;
		esac
	done
}

complete -F _zerofs zerofs
