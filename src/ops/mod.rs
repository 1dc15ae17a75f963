//! What operators see: the status report, why a name resolves as it does, and what the service
//! manager is told.

pub mod explain;
pub mod readiness;
pub mod status;
