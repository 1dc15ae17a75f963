//! Every DNS socket: binding, the UDP receive loops (batched, one thread per socket on Linux),
//! the TCP accept loop and connections with their slots, and what accept loops do on errors.

pub mod accept;
pub mod server;
pub mod tcp_slots;
#[cfg(target_os = "linux")]
pub mod udp_batch;
#[cfg(target_os = "linux")]
pub mod udp_loop;
