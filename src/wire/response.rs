//! The service's answer to a track request (`TrackResponse`, INGESTION.md §4).

use serde::{Deserialize, Serialize};

/// Body of a 200, 206 or error answer: how many items were received and accepted, and one entry
/// per rejected item.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct TrackResponse {
    pub(crate) items_received: i64,
    pub(crate) items_accepted: i64,
    pub(crate) errors: Vec<TrackError>,
}

/// One rejected item: its index in the request and its own status code.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct TrackError {
    pub(crate) index: usize,
    pub(crate) status_code: u16,
    pub(crate) message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let body = r#"{"itemsReceived": 5, "itemsAccepted": 3,
            "errors": [{"index": 0, "statusCode": 400, "message": "103: Field 'time' ..."},
                       {"index": 2, "statusCode": 500, "message": "Internal Server Error"}]}"#;
        let r: TrackResponse = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(r.items_received, 5);
        assert_eq!(r.items_accepted, 3);
        assert_eq!(r.errors.len(), 2);
        assert_eq!(r.errors[1].status_code, 500);
        let empty: TrackResponse = serde_json::from_str("{}").unwrap_or_default();
        assert!(empty.errors.is_empty());
    }
}
