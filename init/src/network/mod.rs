//! The network: for now the loopback interface, which containerd and the
//! services need before anything else.

pub mod loopback;
