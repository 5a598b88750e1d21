//! Typed, versioned registry state (instances.yml, ports.yml) and port allocation.
