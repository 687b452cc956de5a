//! Hand-rolled HTTP/1.1 on glommio: the webhook client and its response reader.

pub mod client;
pub mod response;

pub use client::{Endpoint, HttpError, Pool};
pub use response::Response;
