"""The supervisor: the small process per container that outlives the caller (logs, exit
code, OOM), and the zygote that forks them. Standard library only: it must start fast."""
