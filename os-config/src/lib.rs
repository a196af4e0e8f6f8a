//! The machine's description: the RancherOS-style cloud-config schema, the
//! parsers for the kernel command line and key paths, the layering of
//! configuration sources, the atomic on-disk store and the datasources that
//! deliver user-data.
