"""Bridge networks for containers (SPEC.md section 12): see pylxcore.network.collection."""
