//! What the HTTP API reads and writes: request bodies, their checks, and response bodies.

use eventsourcing::{chrono::DateTime, chrono::Utc, prelude::Aggregate, StoredEvent, Uuid};
use eventsourcing_axum::{types, Problem};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::widget::{WidgetRegistryEndpoint, WidgetRegistryEndpointEvent};

/// The longest URL accepted.
pub const MAX_URL: usize = 2048;
/// The longest name accepted.
pub const MAX_NAME: usize = 200;
/// The longest tenant id accepted.
pub const MAX_TENANT: usize = 100;
/// The largest page of a listing.
pub const MAX_PAGE: usize = 1000;
/// The page of a listing when none is asked for.
pub const DEFAULT_PAGE: usize = 100;

/// `POST /endpoints`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// An `http://` or `https://` URL.
    pub url: String,
    /// A name, not blank.
    pub name: String,
    /// The tenant: letters, digits, `-`, `_` and `.`.
    pub tenant_id: String,
}

/// `PATCH /endpoints/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    /// The new name, not blank.
    pub name: String,
}

/// A 422 problem for input that is well-formed JSON but not acceptable.
pub fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        types::INVALID,
        "Unprocessable Content",
    )
    .with_detail(detail)
}

/// A 400 problem for a malformed query or header.
pub fn bad_request(detail: impl Into<String>) -> Problem {
    Problem::status(StatusCode::BAD_REQUEST).with_detail(detail)
}

impl CreateEndpoint {
    /// Checks every field; the first problem found is the answer.
    pub fn check(&self) -> Result<(), Problem> {
        let url = self.url.as_str();
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || url.len() > MAX_URL
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(format!(
                "url must be an http:// or https:// URL of at most {MAX_URL} bytes, without spaces"
            )));
        }
        check_name(&self.name)?;
        check_tenant(&self.tenant_id)
    }
}

/// A name is not blank and at most [`MAX_NAME`] bytes.
pub fn check_name(name: &str) -> Result<(), Problem> {
    if name.trim().is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "name must not be blank, at most {MAX_NAME} bytes, without control characters"
        )));
    }
    Ok(())
}

/// A tenant id is 1 to [`MAX_TENANT`] letters, digits, `-`, `_` or `.`.
pub fn check_tenant(tenant: &str) -> Result<(), Problem> {
    let ok = !tenant.is_empty()
        && tenant.len() <= MAX_TENANT
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(invalid(format!(
            "tenant_id must be 1 to {MAX_TENANT} letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(())
}

/// A page size from a query: [`DEFAULT_PAGE`] if absent, 1 to [`MAX_PAGE`].
pub fn page_size(limit: Option<usize>) -> Result<usize, Problem> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(bad_request(format!(
            "limit must be 1 to {MAX_PAGE}, not {n}"
        ))),
    }
}

/// An endpoint as the API shows it.
#[derive(Debug, Serialize)]
pub struct EndpointView {
    /// Its id.
    pub id: Uuid,
    /// Its URL.
    pub url: String,
    /// Its name.
    pub name: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Its version: the number of events it has (also the `ETag`).
    pub version: u64,
    /// When it was registered.
    pub created_on: DateTime<Utc>,
    /// When it last changed.
    pub modified_on: DateTime<Utc>,
}

impl From<&WidgetRegistryEndpoint> for EndpointView {
    fn from(e: &WidgetRegistryEndpoint) -> Self {
        EndpointView {
            id: e.id(),
            url: e.url.clone(),
            name: e.name.clone(),
            tenant_id: e.tenant_id.clone(),
            version: e.version(),
            created_on: e.created_on(),
            modified_on: e.modified_on(),
        }
    }
}

/// One event of an endpoint's history.
#[derive(Debug, Serialize)]
pub struct EventView {
    /// Its version in the stream.
    pub version: u64,
    /// The stored event name (`Registered`, `NameUpdated`).
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// Its fields.
    pub data: serde_json::Value,
}

impl EventView {
    /// The stored event, decoded to check it is one of the endpoint's.
    pub(crate) fn of(stored: &StoredEvent, event: WidgetRegistryEndpointEvent) -> Self {
        let data = match event {
            WidgetRegistryEndpointEvent::Registered {
                url,
                name,
                tenant_id,
            } => serde_json::json!({ "url": url, "name": name, "tenant_id": tenant_id }),
            WidgetRegistryEndpointEvent::NameUpdated { name } => {
                serde_json::json!({ "name": name })
            }
        };
        EventView {
            version: stored.version,
            event_type: stored.event_type.clone(),
            recorded_at: stored.timestamp,
            data,
        }
    }
}

/// A page of an endpoint's history.
#[derive(Debug, Serialize)]
pub struct HistoryPage {
    /// The endpoint.
    pub id: Uuid,
    /// The events after `after`, in order.
    pub events: Vec<EventView>,
    /// The `after` of the next page, if this one was full.
    pub next_after: Option<u64>,
}

/// A page of a tenant's endpoints from the read model.
#[derive(Debug, Serialize)]
pub struct TenantPage {
    /// The tenant.
    pub tenant: String,
    /// Its endpoints, by id.
    pub endpoints: Vec<crate::read_model::TenantEndpoint>,
    /// The `after` of the next page, if this one was full.
    pub next_after: Option<Uuid>,
}
