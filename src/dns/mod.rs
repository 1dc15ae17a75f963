//! The query path, in the order a query meets it: [`handler`] parses it and decides; [`zones`]
//! finds what the zone data says about the name; [`policy`] and [`snapshot`] say which
//! endpoints this identity may see; [`answer`] orders them by health and encodes the reply;
//! [`fastpath`] memoises encoded replies; names we do not own go to [`forward`] (and its cache).
//! Everything here but `forward` is pure: no socket I/O.

pub mod answer;
pub mod fastpath;
pub mod forward;
pub mod handler;
pub mod policy;
#[cfg(test)]
mod properties;
pub mod snapshot;
pub mod zones;
