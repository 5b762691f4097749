# utils/parse_options.sh -- command-line option parsing for recipe scripts.
#
# Source it after the script has set its default variables:
#
#   stage=0          # first stage to run
#   stop_stage=100
#   nj=8
#   . utils/parse_options.sh || exit 1
#   # positional arguments (if any) are now in "$@"
#
# Then `script.sh --stage 3 --stop-stage 5 --nj=16 arg1 arg2` sets
# stage=3, stop_stage=5, nj=16 and leaves "arg1 arg2" in "$@".
#
# Rules:
#   * `--some-name VALUE` and `--some-name=VALUE` set the variable some_name
#     (dashes become underscores); it must already be defined.
#   * If the current value is `true` or `false`, the new one must be too; if it is an
#     integer, the new one must be an integer (an option that may also be empty or a
#     word needs a non-integer default, e.g. empty).
#   * Parsing stops at `--` (consumed) or at the first non-option argument.
#   * `--help` / `-h` prints $help_message if set, otherwise the script's
#     header comment block, then the options with their current values.
#
# Being sourced, this file shifts the caller's positional parameters.
# Its helper variables are prefixed with `__po_` and unset at the end.

# The scripts on the way here, outermost first: the script run and any file it sourced that
# sources this one (e.g. egs/*/v1/run.sh, then steps/stages.sh). The help shows the header of the
# first and the options of all of them.
__po_chain=()
for ((__po_i = ${#BASH_SOURCE[@]} - 1; __po_i >= 1; __po_i--)); do __po_chain+=("${BASH_SOURCE[$__po_i]}"); done
[ ${#__po_chain[@]} -gt 0 ] || __po_chain=("$0")
__po_script=${__po_chain[0]}
__po_prog=$(basename -- "$__po_script")

__po_error() {
  echo "$__po_prog: $*" >&2
  echo "$__po_prog: run with --help to list the options." >&2
  exit 1
}

# Print the help text: header comment of the script run (or $help_message), then the options.
__po_help() {
  local line first=1 name value comment re file next i seen=" "
  if [ -n "${help_message:-}" ]; then
    printf '%s\n' "$help_message"
  elif [ -r "$__po_script" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
      if [ $first -eq 1 ] && [[ $line == '#!'* ]]; then
        first=0; continue
      fi
      first=0
      [[ $line == '#'* ]] || break
      line=${line#\#}
      printf '%s\n' "${line# }"
    done < "$__po_script"
  fi
  echo
  echo "Options (current values):"
  # Top-level `name=value  # comment` lines of each script, up to where it sources the next one.
  re='^([A-Za-z_][A-Za-z0-9_]*)=[^#]*(#[[:space:]]*(.*))?$'
  for ((i = 0; i < ${#__po_chain[@]}; i++)); do
    file=${__po_chain[$i]}
    next=parse_options.sh; [ $((i + 1)) -ge ${#__po_chain[@]} ] || next=$(basename -- "${__po_chain[$((i + 1))]}")
    [ -r "$file" ] || continue
    while IFS= read -r line || [ -n "$line" ]; do
      [[ $line == *"$next"* && $line != '#'* ]] && break
      [[ $line =~ $re ]] || continue
      name=${BASH_REMATCH[1]}
      comment=${BASH_REMATCH[3]}
      [ "$name" = help_message ] && continue
      [[ $seen == *" $name "* ]] && continue
      [ -n "${!name+x}" ] || continue
      seen+="$name "
      value=${!name}
      [ -n "$value" ] || value="''"
      printf '  --%-22s %s' "${name//_/-}" "$value"
      [ -n "$comment" ] && printf '  # %s' "$comment"
      echo
    done < "$file"
  done
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      __po_help
      exit 0
      ;;
    --)
      shift
      break
      ;;
    --?*=*)
      __po_opt=${1%%=*}
      __po_value=${1#*=}
      shift
      ;;
    --?*)
      __po_opt=$1
      [ $# -ge 2 ] || __po_error "option $__po_opt needs a value"
      __po_value=$2
      shift 2
      ;;
    *)
      break
      ;;
  esac

  __po_name=${__po_opt#--}
  __po_name=${__po_name//-/_}
  [[ $__po_name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] ||
    __po_error "invalid option name: $__po_opt"
  [ -n "${!__po_name+x}" ] || __po_error "unknown option: $__po_opt"
  case "${!__po_name}" in
    true|false)
      case "$__po_value" in
        true|false) ;;
        *) __po_error "option $__po_opt is boolean: expected true or false, got '$__po_value'" ;;
      esac
      ;;
  esac
  if [[ ${!__po_name} =~ ^-?[0-9]+$ && ! $__po_value =~ ^-?[0-9]+$ ]]; then
    __po_error "option $__po_opt is an integer: expected a whole number, got '$__po_value'"
  fi
  printf -v "$__po_name" '%s' "$__po_value"
done

unset -v __po_chain __po_i __po_script __po_prog __po_opt __po_value __po_name
unset -f __po_error __po_help
true
