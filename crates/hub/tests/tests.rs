//! The hub's tests: one binary. `memory`: in-memory connections
//! (`silverback::testing`); `sockets`: real loopback TCP.

mod memory;
mod sockets;
