"""Running containers: the Container handle and collection, the liblxc config, limits, user
namespaces, layer stacks, and the one door into liblxc."""
