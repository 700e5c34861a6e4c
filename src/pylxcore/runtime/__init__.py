"""Running containers: provisioning (provision), the collection (containers) and the handle
(container), exec, logs, cgroups and processes, start failures, the whole-root check, the liblxc
config, limits, user namespaces, layer stacks, and the one door into liblxc."""
