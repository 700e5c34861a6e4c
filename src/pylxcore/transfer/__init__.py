"""Images in and out of the store: OCI layouts and archives, LXC and Incus exports."""
