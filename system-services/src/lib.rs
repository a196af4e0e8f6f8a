//! Every system service is a container of the system containerd. This crate
//! turns service definitions into OCI specs and drives containerd.
