"""``completion bash``: a bash completion script, made from the parser itself."""

from __future__ import annotations

import argparse

from pylxcore.cli.output import EXIT_OK
from pylxcore.cli.parser import Parser, build_parser

# What the positional arguments of each command are, for bash completion.
_COMPLETE_CONTAINERS = ("exec", "logs", "start", "stop", "restart", "kill", "rm", "stats", "inspect")
_COMPLETE_IMAGES = ("run", "rmi", "tag")

_BASH_TEMPLATE = r"""# bash completion for pylxcore; load with: source <(pylxcore completion bash)
_pylxcore_names() {
    # $1: "ps -a" or "images"; the "name" field of each JSON line
    pylxcore "${_pylxcore_root[@]}" $1 --format json 2>/dev/null | sed -n 's/.*"name": "\([^"]*\)".*/\1/p'
}
_pylxcore() {
    local cur="${COMP_WORDS[COMP_CWORD]}" cmd="" i
    _pylxcore_root=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            --root) _pylxcore_root=(--root "${COMP_WORDS[i + 1]}"); ((i++)) ;;
            -*) ;;
            *) [[ -z $cmd ]] && cmd="${COMP_WORDS[i]}" ;;
        esac
    done
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "@COMMANDS@ @GLOBAL@" -- "$cur"))
        return
    fi
    local opts=""
    case "$cmd" in
@OPTIONS@
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi
    case "$cmd" in
        @CONTAINERS@) COMPREPLY=($(compgen -W "$(_pylxcore_names 'ps -a')" -- "$cur")) ;;
        @IMAGES@) COMPREPLY=($(compgen -W "$(_pylxcore_names images)" -- "$cur")) ;;
        completion) COMPREPLY=($(compgen -W "bash" -- "$cur")) ;;
    esac
}
complete -o default -F _pylxcore pylxcore
"""


def bash_completion(parser: Parser) -> str:
    """A bash completion script for ``parser``: commands, their options, and
    container or image names (read with ``ps -a``/``images --format json``)."""
    global_opts = [o for a in parser.arguments for o in a.option_strings]
    cases = []
    for name, sub in parser.commands.items():
        opts = sorted({o for a in sub.arguments for o in a.option_strings})
        cases.append(f'        {name}) opts="{" ".join(opts)}" ;;')
    return (
        _BASH_TEMPLATE.replace("@COMMANDS@", " ".join(parser.commands))
        .replace("@GLOBAL@", " ".join(global_opts))
        .replace("@OPTIONS@", "\n".join(cases))
        .replace("@CONTAINERS@", "|".join(_COMPLETE_CONTAINERS))
        .replace("@IMAGES@", "|".join(_COMPLETE_IMAGES))
    )


def cmd_completion(args: argparse.Namespace) -> int:
    """``completion bash``: print a bash completion script."""
    print(bash_completion(build_parser()), end="")
    return EXIT_OK
