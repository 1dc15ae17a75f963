//! The local control socket: a Unix domain socket (mode 0600, owner only) speaking
//! newline-delimited JSON, through which an agent out of process feeds reports and asks for
//! status. Also the client side used by `failover-dns report` and `status`.
//!
//! Protocol: one JSON object per line each way, a request (`{"op":…}`) and its reply
//! (`{"reply":…}`); `watch` then streams events until the client closes. Every request and
//! reply is described once, in `docs/control-protocol.md`; the types are in `protocol.rs`.

mod client;
mod error;
mod protocol;
mod server;

pub use client::ControlClient;
pub use error::ControlError;
pub(crate) use protocol::handle_line;
pub use protocol::{ControlReply, ControlRequest};
pub use server::ControlSocket;
