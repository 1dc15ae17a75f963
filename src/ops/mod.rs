//! What operators see: the configuration check, the status report, why a name resolves as it does, the metrics listener,
//! and what the service manager is told.

pub mod check;
pub mod explain;
pub mod metrics_http;
pub mod readiness;
pub mod status;
