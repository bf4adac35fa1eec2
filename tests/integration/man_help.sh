#!/bin/bash
# Man pages, --help and bash completion tell the same story: for kvmscope(8),
# every subcommand's kvmscope-CMD(8) and vmload(1), the options a page
# documents are exactly the options the command's --help lists, and those
# the completion offers after "-". Every subcommand `kvmscope --help` lists
# must have its page (a new command without one fails here, by name), and
# every page must build with scdoc and render without groff warnings.
. "$(dirname "$0")/lib.sh"
cd "$_root"

command -v scdoc >/dev/null || { not_ok "scdoc is not installed (make deps)"; tap_done; }

# options NAME: the option names of --help text on stdin (help) or of a
# scdoc page's OPTIONS and WORKLOADS sections (scd), one per line, sorted.
# An option is a word starting with '-' at the head of an entry: in --help,
# a line indented by 1..8 spaces that starts with '-', up to the first run
# of two spaces; in a page, a line starting with '*-'.
options() {
	python3 -c '
import re, sys
kind = sys.argv[1]
tok = re.compile(r"(?:^|(?<=[\s,\[|]))(--?[A-Za-z][A-Za-z0-9-]*)")
out = set()
section = None
for line in sys.stdin.read().splitlines():
    if kind == "help":
        m = re.match(r"^ {1,8}(-\S.*)$", line)
        if m:
            out.update(tok.findall(re.split(r"\s{2,}", m.group(1))[0]))
    else:
        if line.startswith("# "):
            section = line[2:].strip()
        elif section in ("OPTIONS", "WORKLOADS") and line.startswith("*-"):
            out.update(tok.findall(re.sub(r"[*_]", "", line)))
print("\n".join(sorted(out)))
' "$1"
}

# completion FILE WORD...: what FILE's completion function offers for the
# command line WORD... (the last word is the one being completed)
completion() {
	local file=$1; shift
	bash -c '
		. "$1"; shift
		fn=$(complete -p "$1" | sed -n "s/.*-F \([^ ]*\).*/\1/p")
		COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
		"$fn"
		printf "%s\n" "${COMPREPLY[@]}"' _ "$file" "$@" | sort -u
}

# diff_sets DESC A B: ok when the sorted lists A and B are equal, else say
# what only one side has
diff_sets() {
	local only_a only_b
	only_a=$(comm -23 <(echo "$2") <(echo "$3") | tr '\n' ' ')
	only_b=$(comm -13 <(echo "$2") <(echo "$3") | tr '\n' ' ')
	if [ -z "$only_a$only_b" ]; then
		ok "$1 ($(echo "$2" | wc -l) each)"
	else
		not_ok "$1: only in the first: [${only_a% }], only in the second: [${only_b% }]"
	fi
}

# every page builds and renders cleanly
for scd in man/*.scd; do
	page=$(basename "$scd" .scd)
	if ! scdoc < "$scd" > "$TMPD/$page" 2> "$TMPD/$page.err"; then
		not_ok "$page: scdoc fails: $(head -1 "$TMPD/$page.err")"
		continue
	fi
	warn=$(MANWIDTH=80 man --warnings -l "$TMPD/$page" 2>&1 >/dev/null | head -3)
	expect_eq "$page renders without groff warnings" "$warn" ""
	# the name in its title line is the page's file name
	expect_eq "$page: title line" "$(head -20 "$scd" | grep -m1 -v '^$')" "${page%.*}(${page##*.})"
done

# the subcommands, from `kvmscope --help` (its "commands:" list)
cmds=$("$KVMSCOPE" --help | sed -n '/^commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p' | sort)
[ -n "$cmds" ] || { not_ok "kvmscope --help lists no commands"; tap_done; }
pages=$(ls man/ | sed -n 's/^kvmscope-\(.*\)\.8\.scd$/\1/p' | sort)
for c in $cmds; do
	[ -f "man/kvmscope-$c.8.scd" ] ||
		not_ok "kvmscope $c has no man page: write man/kvmscope-$c.8.scd (see man/kvmscope-vms.8.scd)"
done
diff_sets "kvmscope --help commands = man/kvmscope-*.8.scd pages" "$cmds" "$pages"
listed=$(sed -n '/^# COMMANDS/,/^# /s/^\*\([a-z-]*\)\*$/\1/p' man/kvmscope.8.scd | sort)
diff_sets "kvmscope(8) COMMANDS = kvmscope --help commands" "$listed" "$cmds"
seealso=$(sed -n '/^# SEE ALSO/,$p' man/kvmscope.8.scd | grep -o 'kvmscope-[a-z-]*' | sed 's/kvmscope-//' | sort -u)
diff_sets "kvmscope(8) SEE ALSO names every command's page" "$seealso" "$cmds"
comp_cmds=$(completion completion/kvmscope kvmscope '' | grep -v '^-')
diff_sets "completion of 'kvmscope ' = kvmscope --help commands" "$comp_cmds" "$cmds"

# kvmscope(8) documents -h/--help, which the dispatcher takes
diff_sets "kvmscope(8) options" "$(options scd < man/kvmscope.8.scd)" "$(printf -- '--help\n-h')"
for o in -h --help; do
	"$KVMSCOPE" $o > /dev/null 2>&1
	expect_eq "kvmscope $o exits 0" "$?" 0
done

# check_command LABEL PAGE COMPLETION HELP-COMMAND...
check_command() {
	local label=$1 page=$2 comp=$3; shift 3
	local help man_opts help_opts comp_opts rc
	help=$("$@" --help 2>&1); rc=$?
	expect_eq "$label --help exits 0" "$rc" 0
	help_opts=$(options help <<< "$help")
	[ -n "$help_opts" ] || { not_ok "$label --help: no options found in it"; return; }
	man_opts=$(options scd < "$page")
	diff_sets "$label: options in $(basename "$page" .scd) = options in --help" "$man_opts" "$help_opts"
	# what the completion offers after "-", with the command's words before it
	comp_opts=$(completion "$comp" "${COMP_PREFIX[@]}" - | grep '^-')
	diff_sets "$label: completion after '-' = options in --help" "$comp_opts" "$help_opts"
}

for c in $cmds; do
	[ -f "man/kvmscope-$c.8.scd" ] || continue
	COMP_PREFIX=(kvmscope "$c")
	check_command "kvmscope $c" "man/kvmscope-$c.8.scd" completion/kvmscope "$KVMSCOPE" "$c"
done
COMP_PREFIX=(vmload)
check_command vmload man/vmload.1.scd completion/vmload "$VMLOAD"

tap_done
