//! Tools beside the server: certificate generation (rcgen) for tests and development, and the
//! line client.

pub mod certs;
pub mod client;
