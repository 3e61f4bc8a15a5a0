//! The Track-API wire model (`POST {IngestionEndpoint}/v2.1/track`).
//!
//! Serde types that mirror the official swagger (`track-v2.1.swagger.json`): the envelope, its
//! context tags and the domain types in `data.baseData`, and the service's `TrackResponse`.
//! String lengths are enforced here, by [`limits::Bounded`], so nothing built from user data can
//! exceed a limit of the service. The model only serializes: what the service answers is read
//! into [`TrackResponse`].

pub(crate) mod data;
pub(crate) mod envelope;
pub(crate) mod format;
mod json;
pub(crate) mod limits;
mod response;

pub(crate) use data::*;
pub(crate) use envelope::*;
pub(crate) use format::{TimeSpan, Timestamp};
pub(crate) use json::hex_chunks;
pub(crate) use limits::Bounded;
pub(crate) use response::TrackResponse;
